using TorchSharp;
var t = torch.ones(2, 3, dtype: torch.bfloat16);
Console.WriteLine($"{torch.__version__} {(t * 2).sum().ToSingle()} cuda={torch.cuda.is_available()}");
