using System.CommandLine;
using SpatialMllm.Cli.Commands;

// InvokeAsync: evaluate gets a cancellation token. ProcessTerminationTimeout = null: System.CommandLine would end the
// process 2 s after Ctrl+C/SIGTERM, cutting off the batch of answers in progress; evaluate handles both signals itself
// (ShutdownSignals) and exits 130/143 once its files are flushed, other commands end at once as usual.
return await SpatialMllmCommand.Create().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
