namespace SpatialMllm.Research.Hub;

/// <summary>
/// Where the hub is, where its files are cached, the token sent and whether to go online: huggingface_hub's
/// environment variables, read as it reads them (constants.py, utils/_auth.py), so one cache serves both.
/// </summary>
/// <param name="Endpoint">The hub's base URL, without a trailing '/' (<c>HF_ENDPOINT</c>).</param>
/// <param name="CacheDir">The hub cache holding <c>models--owner--name/</c> folders (<c>HF_HUB_CACHE</c>).</param>
/// <param name="Token">Sent as <c>Authorization: Bearer</c>; null sends none.</param>
/// <param name="Offline">Use the cache only (<c>HF_HUB_OFFLINE=1</c>); a file not there is an error.</param>
public sealed record HubSettings(string Endpoint, string CacheDir, string? Token = null, bool Offline = false)
{
    public const string DefaultEndpoint = "https://huggingface.co";

    public string Endpoint { get; init; } = Endpoint.TrimEnd('/');

    /// <summary>The settings the environment gives, as huggingface_hub resolves them.</summary>
    public static HubSettings FromEnvironment() => FromEnvironment(Environment.GetEnvironmentVariable);

    internal static HubSettings FromEnvironment(Func<string, string?> variable)
    {
        string? Get(string name) => variable(name) is { Length: > 0 } value ? value : null;
        string home = ExpandUser(Get("HF_HOME")
            ?? Path.Combine(Get("XDG_CACHE_HOME") ?? Path.Combine(UserHome(), ".cache"), "huggingface"));
        string cache = ExpandUser(Get("HF_HUB_CACHE") ?? Get("HUGGINGFACE_HUB_CACHE") ?? Path.Combine(home, "hub"));
        string? token = CleanToken(Get("HF_TOKEN") ?? Get("HUGGING_FACE_HUB_TOKEN"));
        if (token == null)
        {
            // `huggingface-cli login` writes the token here.
            string tokenPath = ExpandUser(Get("HF_TOKEN_PATH") ?? Path.Combine(home, "token"));
            if (File.Exists(tokenPath)) token = CleanToken(File.ReadAllText(tokenPath));
        }
        bool offline = IsTrue(Get("HF_HUB_OFFLINE") ?? Get("TRANSFORMERS_OFFLINE"));
        return new HubSettings(Get("HF_ENDPOINT") ?? DefaultEndpoint, cache, token, offline);
    }

    static bool IsTrue(string? value) => value?.ToUpperInvariant() is "1" or "ON" or "YES" or "TRUE";

    static string? CleanToken(string? token) => token?.Replace("\r", "").Replace("\n", "").Trim() is { Length: > 0 } t ? t : null;

    static string UserHome() => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    static string ExpandUser(string path) =>
        path == "~" ? UserHome() : path.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(UserHome(), path[2..]) : path;
}
