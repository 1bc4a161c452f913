using System.Net;

namespace SpatialMllm.Research.Hub;

/// <summary>
/// A repository, revision or file that cannot be had: not on the hub, not allowed without a token, offline and not
/// cached, or a download that does not match its checksum. The message names the repository and, where there is
/// one, the file, and says what to do.
/// </summary>
public sealed class HubException(string message, HttpStatusCode? status = null, Exception? inner = null) : IOException(message, inner)
{
    /// <summary>The hub's answer when it refused (401, 403, 404, …); null for problems found on this side.</summary>
    public HttpStatusCode? Status { get; } = status;
}
