using Microsoft.DotNet.Interactive;
using Microsoft.DotNet.Interactive.Formatting;
using SpatialMllm.Research.Display;
using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Models;
using SpatialMllm.Research.Runtime;
using SpatialMllm.Research.Sampling;

namespace SpatialMllm.Research.Interactive;

/// <summary>
/// Loaded by the notebook kernel when a notebook references the SpatialMllm.Research package: registers HTML formatters
/// for the library's result types (<see cref="LibraryViews"/>), so a cell that ends with a model, video features, an
/// answer, a frame selection or scores displays them. Charts, frame strips, tables and tensor summaries format
/// themselves (a convention-based attribute, which also works with a plain <c>#r</c> of the DLL).
/// </summary>
public sealed class SpatialMllmKernelExtension : IKernelExtension
{
    public Task OnLoadAsync(Kernel kernel)
    {
        // Before any cell touches TorchSharp: its natives from the NuGet cache need the GLIBCXX patch on Debian 12.
        if (NuGetCacheNatives.PreloadPatchedLibTorchSharp() is string note) 
        {
            if (KernelInvocationContext.Current is { } context) KernelInvocationContextExtensions.Display(context, note, "text/plain");
        }
        Register<SpatialMllmModel>(LibraryViews.Of);
        Register<VideoFeatures>(LibraryViews.Of);
        Register<Answer>(LibraryViews.Of);
        Register<FrameSelection>(LibraryViews.Of);
        Register<VsiBenchScores>(LibraryViews.Of);
        Register<ScanQaScores>(LibraryViews.Of);
        return Task.CompletedTask;
    }

    static void Register<T>(Func<T, HtmlView> view) =>
        Formatter.Register<T>((value, writer) => writer.Write(view(value).Html), HtmlFormatter.MimeType);
}
