namespace SpatialMllm.Research; internal static class Placeholder {}
