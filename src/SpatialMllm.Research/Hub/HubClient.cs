using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

namespace SpatialMllm.Research.Hub;

/// <summary>
/// The hub's HTTP endpoints that a download needs (huggingface_hub's hf_api.repo_info and file_download.py): a
/// revision's commit and file list, a file's metadata (HEAD) and its content (GET, from an offset). Redirects are
/// followed here so that the token goes only to the hub's own host, never to the storage a large file redirects to.
/// </summary>
internal sealed class HubClient : IDisposable
{
    const int MaxRedirects = 10;

    /// <summary>How long a download waits for its next bytes before it takes the connection as broken (and resumes).</summary>
    public static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(60);

    readonly HttpClient _http;
    readonly HubSettings _settings;
    readonly Uri _endpoint;

    public HubClient(HubSettings settings)
    {
        _settings = settings;
        _endpoint = new Uri(settings.Endpoint + "/");
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, ConnectTimeout = TimeSpan.FromSeconds(10) })
        {
            // A download stalls rather than ends when the network goes: its reads time out on their own (ReadTimeout).
            Timeout = Timeout.InfiniteTimeSpan,
        };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("spatial-mllm/0.1");
    }

    /// <summary>The commit a revision (branch, tag or commit hash) points to, and its files.</summary>
    public (string Commit, IReadOnlyList<RepoFile> Files, IReadOnlyList<string> FilesWithoutMetadata) GetRevision(
        HubRepository repo, string revision, CancellationToken cancel)
    {
        using var response = Send(HttpMethod.Get, repo.RevisionApiPath(revision), null, cancel);
        if (!response.IsSuccessStatusCode) throw Refused(response, repo, revision, file: null);
        try
        {
            using var doc = JsonDocument.Parse(response.Content.ReadAsStream(cancel));
            var root = doc.RootElement;
            string commit = root.GetProperty("sha").GetString() ?? throw new JsonException("sha is null");
            var files = new List<RepoFile>();
            var withoutMetadata = new List<string>();
            if (!root.TryGetProperty("siblings", out var siblings)) throw new JsonException("no siblings (file list)");
            foreach (var sibling in siblings.EnumerateArray())
            {
                string path = sibling.GetProperty("rfilename").GetString()!;
                bool hasLfs = sibling.TryGetProperty("lfs", out var lfs) && lfs.ValueKind == JsonValueKind.Object;
                if (sibling.TryGetProperty("blobId", out var blobId) && blobId.ValueKind == JsonValueKind.String
                    && (hasLfs || sibling.TryGetProperty("size", out _)))
                    files.Add(hasLfs
                        ? new RepoFile(path, lfs.GetProperty("size").GetInt64(), blobId.GetString()!, lfs.GetProperty("sha256").GetString())
                        : new RepoFile(path, sibling.GetProperty("size").GetInt64(), blobId.GetString()!));
                else withoutMetadata.Add(path);
            }
            return (commit, files, withoutMetadata);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new HubException($"{repo}@{revision}: the hub's answer at {_endpoint}{repo.RevisionApiPath(revision)} is not a revision " +
                                   $"description ({e.Message}); is HF_ENDPOINT ({_settings.Endpoint}) a Hugging Face hub?", inner: e);
        }
    }

    /// <summary>A file's metadata from a HEAD request (huggingface_hub's get_hf_file_metadata): the ETag of what it
    /// links to (X-Linked-Etag, for an LFS file the sha256 of its content), its size and the commit (X-Repo-Commit).</summary>
    public RepoFile Head(HubRepository repo, string commit, string file, CancellationToken cancel)
    {
        using var response = Send(HttpMethod.Head, repo.ResolvePath(commit, file), null, cancel, relativeRedirectsOnly: true);
        if (!response.IsSuccessStatusCode && !IsRedirect(response.StatusCode)) throw Refused(response, repo, commit, file);
        string? Header(string name) => response.Headers.TryGetValues(name, out var v) ? v.FirstOrDefault() : null;
        string? linkedEtag = Header("X-Linked-Etag");
        string? etag = NormalizeEtag(linkedEtag ?? response.Headers.ETag?.Tag);
        long? size = long.TryParse(Header("X-Linked-Size"), out long linked) ? linked
            : IsRedirect(response.StatusCode) ? null : response.Content.Headers.ContentLength;
        if (Header("X-Repo-Commit") == null || etag == null || size == null)
            throw new HubException($"{repo}: the answer to HEAD {file} lacks X-Repo-Commit, ETag or the size; is HF_ENDPOINT ({_settings.Endpoint}) a Hugging Face hub?");
        bool isLfs = linkedEtag != null && etag.Length == 64;
        return new RepoFile(file, size.Value, etag, isLfs ? etag : null);
    }

    /// <summary>GET of a file from <paramref name="offset"/> on (a Range request when above 0). The caller checks
    /// 206 (the rest) against 200 (the server sent it all); a refusal is thrown.</summary>
    public HttpResponseMessage GetContent(HubRepository repo, string commit, string file, long offset, CancellationToken cancel)
    {
        var response = Send(HttpMethod.Get, repo.ResolvePath(commit, file), offset > 0 ? new RangeHeaderValue(offset, null) : null, cancel);
        if (response.IsSuccessStatusCode || response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable) return response;
        using (response) throw Refused(response, repo, commit, file);
    }

    /// <summary>Sends a request and follows redirects; the token goes along only while the host is the hub's.
    /// <paramref name="relativeRedirectsOnly"/>: follow a renamed repository's relative redirect but return the one to a
    /// file's storage, whose X-Linked-* headers a HEAD reads (huggingface_hub's _httpx_follow_relative_redirects).</summary>
    HttpResponseMessage Send(HttpMethod method, string relativePath, RangeHeaderValue? range, CancellationToken cancel, bool relativeRedirectsOnly = false)
    {
        var uri = new Uri(_endpoint, relativePath);
        for (int redirects = 0; ; redirects++)
        {
            using var request = new HttpRequestMessage(method, uri);
            request.Headers.Range = range;
            if (_settings.Token != null && IsHubHost(uri)) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _settings.Token);
            HttpResponseMessage response;
            try { response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancel); }
            catch (HttpRequestException e)
            {
                throw new HubException($"cannot reach {uri.GetLeftPart(UriPartial.Authority)} ({e.Message}). Check the network, HF_ENDPOINT " +
                                       "(default https://huggingface.co), or set HF_HUB_OFFLINE=1 to use only what is cached.", inner: e);
            }
            if (!IsRedirect(response.StatusCode) || response.Headers.Location is not { } location) return response;
            if (relativeRedirectsOnly && location.IsAbsoluteUri) return response;
            var next = new Uri(uri, location);
            response.Dispose();
            if (redirects == MaxRedirects) throw new HubException($"{method} {uri}: more than {MaxRedirects} redirects.");
            uri = next;
        }
    }

    bool IsHubHost(Uri uri) => Uri.Compare(uri, _endpoint, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;

    static bool IsRedirect(HttpStatusCode status) => (int)status is >= 300 and < 400;

    /// <summary>An ETag as a file name: W/"x" and "x" both give x (huggingface_hub's _normalize_etag).</summary>
    static string? NormalizeEtag(string? etag) => etag == null ? null : (etag.StartsWith("W/", StringComparison.Ordinal) ? etag[2..] : etag).Trim('"');

    /// <summary>The hub's refusal as an error that says what to do (huggingface_hub's hf_raise_for_status: the
    /// X-Error-Code header tells a missing repository, revision and file apart).</summary>
    HubException Refused(HttpResponseMessage response, HubRepository repo, string revision, string? file)
    {
        string? code = response.Headers.TryGetValues("X-Error-Code", out var c) ? c.FirstOrDefault() : null;
        string? hubMessage = response.Headers.TryGetValues("X-Error-Message", out var m) ? m.FirstOrDefault() : null;
        string what = file == null ? $"{repo}@{revision}" : $"{repo}@{revision}: {file}";
        string page = repo.PageUrl(_settings.Endpoint);
        string otherType = repo.Type == RepoType.Model ? " (a dataset? pass --repo-type dataset)" : "";
        string message = (int)response.StatusCode switch
        {
            401 => $"{what}: 401 Unauthorized — {repo} is private or gated, or does not exist on {_settings.Endpoint}{otherType}. " +
                   (_settings.Token == null
                       ? "No token was sent: set HF_TOKEN, or log in with `huggingface-cli login` (it writes $HF_HOME/token)."
                       : "The token sent (HF_TOKEN or $HF_HOME/token) was not accepted for it."),
            403 when code == "GatedRepo" => $"{what}: 403 Forbidden — {repo} is gated: accept its conditions at {page} with the account of your token.",
            403 => $"{what}: 403 Forbidden — your token has no access to {repo}" + (hubMessage != null ? $" ({hubMessage})." : ".") +
                   $" If it is gated, accept its conditions at {page}; a fine-grained token needs read access to it.",
            404 when code == "RevisionNotFound" => $"{what}: 404 — {repo} has no revision '{revision}' (a branch, tag or commit hash).",
            404 when code == "EntryNotFound" || (file != null && code != "RepoNotFound") => $"{what}: 404 — {repo} has no file '{file}' at revision '{revision}'.",
            404 => $"{what}: 404 — no repository {repo} on {_settings.Endpoint}{otherType}.",
            _ => $"{what}: the hub answered {(int)response.StatusCode} {response.ReasonPhrase}" + (hubMessage != null ? $" ({hubMessage})." : "."),
        };
        return new HubException(message, response.StatusCode);
    }

    public void Dispose() => _http.Dispose();
}
