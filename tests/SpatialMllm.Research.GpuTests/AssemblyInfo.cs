// One GPU, and full-size models of 10–20 GB each: the tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
