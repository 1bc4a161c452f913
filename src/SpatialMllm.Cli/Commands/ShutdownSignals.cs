using System.Runtime.InteropServices;

namespace SpatialMllm.Cli.Commands;

/// <summary>
/// SIGINT (Ctrl+C) and SIGTERM (a scheduler's stop) during a run: the first asks the run to stop after the batch of
/// answers in progress (one video's questions) — it is finished and flushed, the results file stays resumable — and the
/// exit code says which signal (130 or 143, as a shell reports them). A second SIGINT or SIGTERM ends the process at once, except in a worker, where
/// the parent decides. The token also follows <paramref name="outer"/> (System.CommandLine's).
/// </summary>
internal sealed class ShutdownSignals : IDisposable
{
    readonly CancellationTokenSource _cancel;
    readonly PosixSignalRegistration[] _registrations;
    int _received;

    public ShutdownSignals(CancellationToken outer, bool isWorker)
    {
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(outer);
        void Handle(PosixSignalContext context)
        {
            if (Interlocked.CompareExchange(ref _received, (int)context.Signal, 0) != 0 && !isWorker) return; // second: default action
            context.Cancel = true;
            _cancel.Cancel();
        }
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => _cancel.Token;

    /// <summary>The signal that stopped the run, if one did.</summary>
    public PosixSignal? Received => _received == 0 ? null : (PosixSignal)_received;

    /// <summary>143 after SIGTERM, else 130 (SIGINT, or a cancellation from outside).</summary>
    public int InterruptedExitCode => Received == PosixSignal.SIGTERM ? 143 : CliSupport.Interrupted;

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
        _cancel.Dispose();
    }
}
