using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Processing;

/// <summary>
/// An independent, double-precision version of PyTorch's antialiased bicubic resize (the PIL-style
/// separable filter behind interpolate(mode="bicubic", antialias=True), Keys a = −0.5, support scaled
/// by the downscale factor), rounded and clamped to uint8 as torchvision does.
/// </summary>
internal static class AntialiasedBicubicReference
{
    public static Tensor Resize(Tensor framesUint8, int outH, int outW)
    {
        int t = (int)framesUint8.shape[0], c = (int)framesUint8.shape[1], inH = (int)framesUint8.shape[2], inW = (int)framesUint8.shape[3];
        var src = framesUint8.data<byte>().ToArray();
        var wy = Weights(inH, outH);
        var wx = Weights(inW, outW);
        var dst = new byte[t * c * outH * outW];
        var horizontal = new double[inH * outW];
        for (int plane = 0; plane < t * c; plane++)
        {
            int baseIn = plane * inH * inW;
            for (int y = 0; y < inH; y++)
                for (int x = 0; x < outW; x++)
                {
                    double sum = 0;
                    var (start, w) = wx[x];
                    for (int k = 0; k < w.Length; k++) sum += w[k] * src[baseIn + y * inW + start + k];
                    horizontal[y * outW + x] = sum;
                }
            for (int y = 0; y < outH; y++)
                for (int x = 0; x < outW; x++)
                {
                    double sum = 0;
                    var (start, w) = wy[y];
                    for (int k = 0; k < w.Length; k++) sum += w[k] * horizontal[(start + k) * outW + x];
                    dst[(plane * outH + y) * outW + x] = (byte)Math.Clamp(Math.Round(sum, MidpointRounding.ToEven), 0, 255);
                }
        }
        return tensor(dst, [t, c, outH, outW]);
    }

    static (int Start, double[] W)[] Weights(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize;
        double support = scale >= 1 ? 2 * scale : 2; // interp_size 4 / 2, widened when downscaling
        double invScale = scale >= 1 ? 1 / scale : 1;
        var result = new (int, double[])[outSize];
        for (int i = 0; i < outSize; i++)
        {
            double center = scale * (i + 0.5);
            int min = Math.Max((int)(center - support + 0.5), 0);
            int size = Math.Min((int)(center + support + 0.5), inSize) - min;
            var w = new double[size];
            double total = 0;
            for (int j = 0; j < size; j++) total += w[j] = Keys((j + min - center + 0.5) * invScale);
            for (int j = 0; j < size; j++) w[j] /= total;
            result[i] = (min, w);
        }
        return result;
    }

    static double Keys(double x)
    {
        const double a = -0.5;
        x = Math.Abs(x);
        if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
        if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
        return 0;
    }
}
