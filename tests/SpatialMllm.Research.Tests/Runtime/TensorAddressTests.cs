using SpatialMllm.Research.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace SpatialMllm.Research.Tests.Runtime;

public class TensorAddressTests
{
    [Fact]
    public void A_view_starts_where_its_offset_says_and_shares_its_bases_storage()
    {
        using var scope = torch.NewDisposeScope();
        var whole = torch.arange(12, dtype: ScalarType.Float32).view(3, 4);
        IntPtr start = TensorAddress.Of(whole);
        Assert.NotEqual(IntPtr.Zero, start);
        Assert.Equal(start + 2 * 4 * sizeof(float), TensorAddress.Of(whole[2]));
        Assert.Equal(start + 1 * sizeof(float), TensorAddress.Of(whole[.., 1..]));
        Assert.Equal(start, TensorAddress.Of(whole.view(12)));
        Assert.NotEqual(start, TensorAddress.Of(whole.clone()));
    }
}
