using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using SpatialMllm.Research.Hub;

namespace SpatialMllm.Research.Tests.Hub;

/// <summary>
/// A stand-in for the Hugging Face hub on 127.0.0.1 (a free port), answering the endpoints a download uses as the hub
/// does: <c>GET /api/{models|datasets}/ID/revision/REV?blobs=true</c> (sha and siblings with blobId, size, lfs),
/// <c>HEAD|GET [datasets/]ID/resolve/REV/FILE</c> (X-Repo-Commit, ETag = git blob id for a regular file; for an LFS
/// file a 302 to its storage with X-Linked-Etag = sha256 and X-Linked-Size), ranged GETs of the storage, and
/// 401/404 with X-Error-Code. Every request is recorded.
/// </summary>
internal sealed class FakeHub : IDisposable
{
    sealed record Repo(Dictionary<string, string> Refs, Dictionary<string, Dictionary<string, HubFile>> Commits)
    {
        public string? RequiredToken { get; set; }
    }

    public sealed record HubFile(byte[] Content, bool IsLfs)
    {
        public string GitBlobId => Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {Content.Length}\0"), .. Content]));
        public string Sha256 => Convert.ToHexStringLower(SHA256.HashData(Content));
        public string Etag => IsLfs ? Sha256 : GitBlobId;
    }

    readonly HttpListener _listener;
    readonly Thread _loop;
    readonly Dictionary<(RepoType, string), Repo> _repos = [];
    readonly List<string> _requests = [];
    readonly object _gate = new();
    int _commits;

    public string Endpoint { get; }

    /// <summary>LFS files served with other bytes than their listed sha256.</summary>
    public HashSet<string> Corrupted { get; } = [];

    /// <summary>LFS files whose next download is cut off halfway (the connection drops).</summary>
    public HashSet<string> CutOnce { get; } = [];

    /// <summary>The revision API lists file names only (no blobId, size or lfs): the client must HEAD each file.</summary>
    public bool ListNamesOnly { get; set; }

    /// <summary>Bytes of file content sent so far.</summary>
    public long BytesServed { get; private set; }

    public FakeHub()
    {
        for (int attempt = 1; ; attempt++)
        {
            int port = FreePort();
            _listener = new HttpListener();
            _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
            try
            {
                _listener.Start();
                Endpoint = $"http://127.0.0.1:{port}";
                break;
            }
            catch (HttpListenerException) when (attempt < 5) { _listener.Close(); }
        }
        _loop = new Thread(Serve) { IsBackground = true, Name = "fake hub" };
        _loop.Start();
    }

    /// <summary>Requests so far, as "METHOD /path?query" (with " Range: …" and " auth: TOKEN" when sent).</summary>
    public IReadOnlyList<string> Requests { get { lock (_gate) return [.. _requests]; } }

    public void ClearRequests() { lock (_gate) _requests.Clear(); }

    /// <summary>Adds a commit of <paramref name="files"/> (name → content; LFS: *.safetensors, *.zip, *.pt, *.bin) and points
    /// <paramref name="refName"/> to it. Returns the commit hash.</summary>
    public string AddCommit(string id, IReadOnlyDictionary<string, byte[]> files, RepoType type = RepoType.Model, string refName = "main")
    {
        lock (_gate)
        {
            if (!_repos.TryGetValue((type, id), out var repo)) _repos[(type, id)] = repo = new Repo([], []);
            string commit = Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes($"{id}:{++_commits}")));
            repo.Commits[commit] = files.ToDictionary(kv => kv.Key, kv => new HubFile(kv.Value, IsLfsName(kv.Key)));
            repo.Refs[refName] = commit;
            return commit;
        }
    }

    public void RequireToken(string id, string token, RepoType type = RepoType.Model) { lock (_gate) _repos[(type, id)].RequiredToken = token; }

    public HubFile File(string id, string commit, string path, RepoType type = RepoType.Model) { lock (_gate) return _repos[(type, id)].Commits[commit][path]; }

    static bool IsLfsName(string path) => Path.GetExtension(path) is ".safetensors" or ".zip" or ".pt" or ".bin";

    static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    void Serve()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = _listener.GetContext(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            try { Handle(context); }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException) { context.Response.Abort(); }
        }
    }

    void Handle(HttpListenerContext context)
    {
        var request = context.Request;
        var response = context.Response;
        string path = request.Url!.AbsolutePath;
        string? token = request.Headers["Authorization"] is { } auth && auth.StartsWith("Bearer ", StringComparison.Ordinal) ? auth[7..] : null;
        lock (_gate)
            _requests.Add($"{request.HttpMethod} {request.Url.PathAndQuery}" + (request.Headers["Range"] is { } r ? $" Range: {r}" : "") +
                          (token != null ? $" auth: {token}" : ""));
        var segments = path.Trim('/').Split('/').Select(Uri.UnescapeDataString).ToArray();

        if (segments is ["lfs", var sha256])
        {
            var file = FindLfs(sha256);
            if (file == null) { Refuse(response, 404, "EntryNotFound"); return; }
            bool corrupt, cut;
            lock (_gate)
            {
                corrupt = Corrupted.Any(name => FindLfs(sha256, name) != null);
                cut = CutOnce.RemoveWhere(name => FindLfs(sha256, name) != null) > 0;
            }
            byte[] content = corrupt ? [.. file.Content.Select(b => (byte)(b ^ 0x5A))] : file.Content;
            SendContent(request, response, content, cut);
            return;
        }

        if (segments is ["api", var plural, var owner, var name, "revision", var revision])
        {
            var type = plural == "datasets" ? RepoType.Dataset : RepoType.Model;
            if (!Authorized(type, $"{owner}/{name}", token, response, out var repo)) return;
            if (!Resolve(repo, revision, response, out string commit)) return;
            var siblings = repo.Commits[commit].OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => ListNamesOnly
                ? (object)new { rfilename = kv.Key }
                : kv.Value.IsLfs
                    ? new { rfilename = kv.Key, size = kv.Value.Content.Length, blobId = kv.Value.GitBlobId, lfs = new { size = kv.Value.Content.Length, sha256 = kv.Value.Sha256, pointerSize = 134 } }
                    : new { rfilename = kv.Key, size = kv.Value.Content.Length, blobId = kv.Value.GitBlobId });
            SendJson(response, new { id = $"{owner}/{name}", sha = commit, siblings });
            return;
        }

        int resolveAt = Array.IndexOf(segments, "resolve");
        if (resolveAt is 2 or 3 && segments.Length > resolveAt + 2)
        {
            var type = resolveAt == 3 && segments[0] == "datasets" ? RepoType.Dataset : RepoType.Model;
            string id = $"{segments[resolveAt - 2]}/{segments[resolveAt - 1]}";
            if (!Authorized(type, id, token, response, out var repo)) return;
            if (!Resolve(repo, segments[resolveAt + 1], response, out string commit)) return;
            string filePath = string.Join('/', segments[(resolveAt + 2)..]);
            if (!repo.Commits[commit].TryGetValue(filePath, out var file)) { Refuse(response, 404, "EntryNotFound", commit); return; }
            response.Headers["X-Repo-Commit"] = commit;
            if (file.IsLfs)
            {
                response.StatusCode = 302;
                response.Headers["Location"] = $"{Endpoint}/lfs/{file.Sha256}";
                response.Headers["X-Linked-Etag"] = $"\"{file.Sha256}\"";
                response.Headers["X-Linked-Size"] = file.Content.Length.ToString();
                response.Close();
                return;
            }
            response.Headers["ETag"] = $"\"{file.GitBlobId}\"";
            SendContent(request, response, file.Content, cut: false);
            return;
        }
        Refuse(response, 404, null);
    }

    HubFile? FindLfs(string sha256, string? name = null)
    {
        lock (_gate)
            return _repos.Values.SelectMany(r => r.Commits.Values).SelectMany(files => files)
                .Where(kv => kv.Value.IsLfs && kv.Value.Sha256 == sha256 && (name == null || kv.Key == name))
                .Select(kv => kv.Value).FirstOrDefault();
    }

    bool Authorized(RepoType type, string id, string? token, HttpListenerResponse response, out Repo repo)
    {
        lock (_gate)
            if (!_repos.TryGetValue((type, id), out repo!)) { Refuse(response, 404, "RepoNotFound"); return false; }
        if (repo.RequiredToken == null || token == repo.RequiredToken) return true;
        // The hub answers 401 alike for private, gated and missing repositories when unauthenticated.
        if (token != null) response.Headers["X-Error-Message"] = "Invalid credentials in Authorization header";
        Refuse(response, 401, "RepoNotFound");
        return false;
    }

    static bool Resolve(Repo repo, string revision, HttpListenerResponse response, out string commit)
    {
        commit = repo.Refs.TryGetValue(revision, out var c) ? c : repo.Commits.ContainsKey(revision) ? revision : "";
        if (commit.Length > 0) return true;
        Refuse(response, 404, "RevisionNotFound");
        return false;
    }

    static void Refuse(HttpListenerResponse response, int status, string? errorCode, string? commit = null)
    {
        response.StatusCode = status;
        if (errorCode != null) response.Headers["X-Error-Code"] = errorCode;
        if (commit != null) response.Headers["X-Repo-Commit"] = commit;
        response.Close();
    }

    static void SendJson(HttpListenerResponse response, object body)
    {
        byte[] bytes = JsonSerializer.SerializeToUtf8Bytes(body);
        response.ContentType = "application/json";
        response.ContentLength64 = bytes.Length;
        response.OutputStream.Write(bytes);
        response.Close();
    }

    /// <summary>The content, or from a "bytes=N-" range on (206); <paramref name="cut"/> drops the connection halfway.</summary>
    void SendContent(HttpListenerRequest request, HttpListenerResponse response, byte[] content, bool cut)
    {
        long from = 0;
        if (request.Headers["Range"] is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            from = long.Parse(range[6..^1]);
            if (from >= content.Length)
            {
                response.StatusCode = 416;
                response.Headers["Content-Range"] = $"bytes */{content.Length}";
                response.Close();
                return;
            }
            response.StatusCode = 206;
            response.Headers["Content-Range"] = $"bytes {from}-{content.Length - 1}/{content.Length}";
        }
        response.ContentLength64 = content.Length - from;
        if (request.HttpMethod == "HEAD") { response.Close(); return; }
        int length = (int)(content.Length - from);
        if (cut) length /= 2;
        lock (_gate) BytesServed += length; // before the write: the client may be done before this thread runs on
        response.OutputStream.Write(content, (int)from, length);
        if (cut) { response.OutputStream.Flush(); response.Abort(); return; }
        response.Close();
    }

    public void Dispose()
    {
        // Close alone: after Stop, Close binds the port again to remove the prefix, which fails with "Address already in
        // use" once another test's hub has taken the freed port.
        _listener.Close();
        _loop.Join(TimeSpan.FromSeconds(5));
    }
}
