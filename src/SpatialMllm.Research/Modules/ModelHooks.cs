using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Modules;

/// <summary>
/// Forward hooks at named points of the model, with PyTorch's <c>register_forward_hook</c> semantics: a hook gets the
/// point's name and tensor and returns null to keep it or a tensor (same shape; cast to the point's dtype and device) to
/// replace it downstream. Hooks on one point run in the order they were added, each seeing the previous one's result.
/// <c>Add</c> returns a handle: disposing it (leaving a <c>using</c> scope) removes the hook.
/// <para>
/// A point is a name such as <c>vision_embeds</c>, <c>model.layers.3</c> or <c>model.layers.3.self_attn.attn_weights</c>
/// (<c>SpatialMllmModel.HookPoints</c> lists them); a pattern may use <c>*</c> for any run of characters
/// (<c>model.layers.*</c> matches every layer and their attention points).
/// </para>
/// <para>
/// With no hook set, nothing changes: the GPU fast paths (CUDA-graph decode, the TorchScript step, the NVRTC kernels)
/// run as before. A hook on a decoder point makes cached decoding run the eager path so that the hook sees every token.
/// </para>
/// The tensor passed to a hook lives only during the call (inside a dispose scope), and so does every tensor the hook
/// creates except the one it returns: to keep one, copy it out, e.g. <c>t.detach().cpu().clone().DetachFromDisposeScope()</c>,
/// or use <see cref="Capture(string, bool)"/>.
/// </summary>
public sealed class ModelHooks
{
    readonly Func<IReadOnlyList<string>> _points;
    readonly object _gate = new();
    Hook[] _hooks = [];
    int _version;

    internal ModelHooks(Func<IReadOnlyList<string>> points) => _points = points;

    /// <summary>Whether any hook is set.</summary>
    public bool Any => Volatile.Read(ref _hooks).Length != 0;

    /// <summary>The patterns of the hooks set, in the order they run.</summary>
    public IReadOnlyList<string> Patterns => Volatile.Read(ref _hooks).Select(h => h.Pattern).ToArray();

    /// <summary>Changes each time a hook is added or removed (lets a caller cache <see cref="IsSet"/> answers).</summary>
    internal int Version => Volatile.Read(ref _version);

    /// <summary>
    /// Adds a hook that may replace the tensor: return null to keep it, or the replacement (same shape). The pattern must
    /// match at least one of the model's hook points.
    /// </summary>
    public IDisposable Add(string point, Func<string, Tensor, Tensor?> hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        var entry = new Hook(point, ToRegex(point), hook);
        var points = _points();
        if (!points.Any(entry.Matches))
            throw new ArgumentException(
                $"No hook point matches '{point}'. The model's points: {string.Join(", ", Summarise(points))} (use * as a wildcard).", nameof(point));
        lock (_gate)
        {
            _hooks = [.. _hooks, entry];
            _version++;
        }
        return new HookHandle(this, entry);
    }

    /// <summary>Adds a hook that only looks (it cannot replace the tensor).</summary>
    public IDisposable Add(string point, Action<string, Tensor> observe)
    {
        ArgumentNullException.ThrowIfNull(observe);
        return Add(point, (name, t) => { observe(name, t); return null; });
    }

    /// <summary>
    /// Keeps a detached copy of the tensor at each point matching <paramref name="point"/> every time it runs, in order.
    /// <c>captured["vision_embeds"]</c> is the tensor of a point that ran once (the encoder points; a decoder point in one
    /// forward). During generation a decoder point runs for the prompt and again at each generated token:
    /// <c>captured.Calls("model.layers.3")</c> lists every call, with <see cref="CapturedCalls.Prefill"/> (the prompt's
    /// forward) and <see cref="CapturedCalls.Steps"/> (one per decode step). Disposing the result removes the hook and
    /// frees the copies.
    /// </summary>
    /// <param name="point">A point name or pattern (<c>*</c> for any run of characters).</param>
    /// <param name="toCpu">Copy to the CPU (dtype kept); false keeps the device.</param>
    public CapturedTensors Capture(string point, bool toCpu = true) => Capture([point], toCpu);

    /// <summary><see cref="Capture(string, bool)"/> at several points (names or patterns).</summary>
    public CapturedTensors Capture(IEnumerable<string> points, bool toCpu = true)
    {
        var captured = new CapturedTensors();
        try
        {
            foreach (var point in points) captured.Handles.Add(Add(point, (name, t) => captured.Keep(name, t, toCpu, t_inDecodeStep)));
        }
        catch
        {
            captured.Dispose();
            throw;
        }
        return captured;
    }

    /// <summary>Removes every hook.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            _hooks = [];
            _version++;
        }
    }

    [ThreadStatic] static bool t_inDecodeStep;

    /// <summary>
    /// Marks the hook calls this thread makes until disposed as those of a cached decode step (generation's loop wraps each
    /// step in it), so that <see cref="Capture(string, bool)"/> can tell a step's call from the prompt's.
    /// </summary>
    internal static DecodeStepScope DecodeStep() => new(t_inDecodeStep);

    internal readonly struct DecodeStepScope : IDisposable
    {
        readonly bool _outer;
        internal DecodeStepScope(bool outer)
        {
            _outer = outer;
            t_inDecodeStep = true;
        }
        public void Dispose() => t_inDecodeStep = _outer;
    }

    /// <summary>Whether a hook matches the point <paramref name="name"/>.</summary>
    public bool IsSet(string name)
    {
        foreach (var hook in Volatile.Read(ref _hooks))
            if (hook.Matches(name)) return true;
        return false;
    }

    /// <summary>
    /// Runs the hooks matching <paramref name="name"/> on <paramref name="tensor"/>: the tensor itself when none replaces
    /// it, else the last replacement, registered in the caller's dispose scope.
    /// </summary>
    internal Tensor Run(string name, Tensor tensor)
    {
        var hooks = Volatile.Read(ref _hooks);
        if (hooks.Length == 0) return tensor;
        var current = tensor;
        foreach (var hook in hooks)
        {
            if (!hook.Matches(name)) continue;
            using var scope = torch.NewDisposeScope();
            Tensor? replacement;
            try { replacement = hook.Function(name, current); }
            catch (Exception e) { throw new InvalidOperationException($"The hook on '{hook.Pattern}' failed at point '{name}': {e.Message}", e); }
            if (replacement is null || replacement.Handle == current.Handle) continue;
            if (!replacement.shape.SequenceEqual(current.shape))
                throw new ArgumentException(
                    $"The hook on '{hook.Pattern}' returned a tensor of shape [{string.Join(", ", replacement.shape)}] at point '{name}', " +
                    $"whose tensor is [{string.Join(", ", current.shape)}]: a replacement must keep the shape.");
            // A new handle in this scope, moved to the caller's: the hook's own tensors (and a tensor it captured from
            // outside, which stays the caller's) are never handed over.
            var converted = replacement.dtype == current.dtype && replacement.device == current.device
                ? replacement.alias() : replacement.to(current.dtype, current.device);
            current = converted.MoveToOuterDisposeScope();
        }
        return current;
    }

    internal void Remove(object entry)
    {
        lock (_gate)
        {
            _hooks = _hooks.Where(h => !ReferenceEquals(h, entry)).ToArray();
            _version++;
        }
    }

    /// <summary>The point names with runs of numbered siblings folded (<c>model.layers.{0..35}</c>).</summary>
    static IEnumerable<string> Summarise(IEnumerable<string> points) =>
        points.Select(p => Regex.Replace(p, @"\.\d+(?=\.|$)", ".{i}")).Distinct();

    static Regex? ToRegex(string pattern)
    {
        if (string.IsNullOrWhiteSpace(pattern)) throw new ArgumentException("A hook point name is needed.", nameof(pattern));
        return pattern.Contains('*')
            ? new Regex("^" + string.Join(".*", pattern.Split('*').Select(Regex.Escape)) + "$", RegexOptions.CultureInvariant)
            : null;
    }

    sealed record Hook(string Pattern, Regex? Regex, Func<string, Tensor, Tensor?> Function)
    {
        public bool Matches(string name) => Regex?.IsMatch(name) ?? string.Equals(Pattern, name, StringComparison.Ordinal);
    }

    sealed class HookHandle(ModelHooks owner, object entry) : IDisposable
    {
        int _removed;
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _removed, 1) == 0) owner.Remove(entry);
        }
    }
}

/// <summary>
/// Copies of the tensors seen at hook points, every call kept in order (see <see cref="ModelHooks.Capture(string, bool)"/>).
/// Disposing it removes the hooks and frees the copies (every tensor it handed out).
/// </summary>
public sealed class CapturedTensors : IDisposable
{
    readonly Dictionary<string, List<(Tensor Copy, bool InDecodeStep)>> _calls = new(StringComparer.Ordinal);
    readonly List<string> _order = [];
    internal List<IDisposable> Handles { get; } = [];

    /// <summary>
    /// The copy at <paramref name="name"/> when the point ran once: the encoder points, or a decoder point in one forward.
    /// A point that ran several times (a decoder point during generation) throws, saying how often: use
    /// <see cref="Calls"/> for it.
    /// </summary>
    public Tensor this[string name]
    {
        get
        {
            var calls = Calls(name);
            return calls.Count == 1 ? calls[0]
                : throw new InvalidOperationException(
                    $"'{name}' was captured {calls.Count} times ({calls.Count - calls.Steps.Count} outside decoding, {calls.Steps.Count} in decode steps): " +
                    $"use captured.Calls(\"{name}\") and its Prefill, Steps or [i].");
        }
    }

    /// <summary>Every copy at <paramref name="name"/>, in the order the calls came.</summary>
    /// <exception cref="KeyNotFoundException">Nothing was captured there; the message lists what was.</exception>
    public CapturedCalls Calls(string name)
    {
        lock (_calls)
            return _calls.TryGetValue(name, out var calls) ? new CapturedCalls(name, [.. calls])
                : throw new KeyNotFoundException($"Nothing was captured at '{name}' (captured: {string.Join(", ", _order)}).");
    }

    /// <summary>The points seen so far, in the order they were first seen.</summary>
    public IReadOnlyList<string> Names { get { lock (_calls) return _order.ToArray(); } }

    public bool Contains(string name) { lock (_calls) return _calls.ContainsKey(name); }

    /// <summary>Stops capturing (removes the hook) and keeps the copies made so far.</summary>
    public void Stop()
    {
        foreach (var handle in Handles) handle.Dispose();
    }

    internal Tensor? Keep(string name, Tensor t, bool toCpu, bool inDecodeStep)
    {
        var copy = (toCpu ? t.detach().cpu() : t.detach()).clone().DetachFromDisposeScope();
        lock (_calls)
        {
            if (!_calls.TryGetValue(name, out var calls))
            {
                _calls[name] = calls = [];
                _order.Add(name);
            }
            calls.Add((copy, inDecodeStep));
        }
        return null;
    }

    public void Dispose()
    {
        Stop();
        lock (_calls)
        {
            foreach (var (copy, _) in _calls.Values.SelectMany(c => c)) copy.Dispose();
            _calls.Clear();
            _order.Clear();
        }
    }
}

/// <summary>
/// The copies one hook point received, in call order (owned by the <see cref="CapturedTensors"/> they came from). Around
/// one generation (<c>Answer</c>, <c>Generate</c>) a decoder point (<c>model.layers.{i}</c>, its <c>attn_weights</c>,
/// <c>model.norm</c>) runs once for the prompt, <see cref="Prefill"/> [1, L, …], then once per decode step,
/// <see cref="Steps"/>: <c>Steps[k]</c> is the forward of generated token k [1, 1, …], which scores token k + 1. A
/// capture around several generations holds each one's calls in turn.
/// </summary>
public sealed class CapturedCalls : IReadOnlyList<Tensor>
{
    readonly (Tensor Copy, bool InDecodeStep)[] _calls;

    internal CapturedCalls(string name, (Tensor Copy, bool InDecodeStep)[] calls)
    {
        Name = name;
        _calls = calls;
        Steps = [.. calls.Where(c => c.InDecodeStep).Select(c => c.Copy)];
    }

    /// <summary>The hook point.</summary>
    public string Name { get; }

    public int Count => _calls.Length;

    /// <summary>The <paramref name="index"/>-th call's copy.</summary>
    public Tensor this[int index] => _calls[index].Copy;

    /// <summary>
    /// The one call made outside decoding: the prompt's forward (prefill). Throws when there were several (a capture
    /// around several generations or forwards: index the calls instead) or none.
    /// </summary>
    public Tensor Prefill
    {
        get
        {
            var forwards = _calls.Where(c => !c.InDecodeStep).Select(c => c.Copy).ToArray();
            return forwards.Length == 1 ? forwards[0]
                : throw new InvalidOperationException(
                    $"'{Name}' ran in {forwards.Length} forwards outside decoding, not one: index its calls ([i], in call order) instead.");
        }
    }

    /// <summary>The calls made by cached decode steps, in order (empty for points decoding does not reach).</summary>
    public IReadOnlyList<Tensor> Steps { get; }

    public IEnumerator<Tensor> GetEnumerator() => _calls.Select(c => c.Copy).GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
