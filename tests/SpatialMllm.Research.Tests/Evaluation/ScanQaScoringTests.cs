using SpatialMllm.Research.Evaluation;

namespace SpatialMllm.Research.Tests.Evaluation;

/// <summary>Caption metrics against values worked out by hand (the derivation is in each comment).</summary>
public class ScanQaScoringTests
{
    static CaptionMetrics.Sample S(string hypothesis, params string[] references) => new(hypothesis, references);

    [Fact]
    public void Bleu_CorpusTotalsAndBrevityPenalty()
    {
        // "a b" vs "a b c d": len 2, reflen 4, guess [2,1,0,0], correct [2,1,0,0].
        // "x y" vs "x z":     len 2, reflen 2, guess [2,1,0,0], correct [1,0,0,0].
        // Totals: len 4, reflen 6 → BP = exp(1 - 6/4) = e^-0.5; BLEU-1 = 3/4·BP, BLEU-2 = sqrt(3/4 · 1/2)·BP.
        double[] bleu = CaptionMetrics.Bleu([S("a b", "a b c d"), S("x y", "x z")]);
        Assert.Equal(0.75 * Math.Exp(-0.5), bleu[0], 9);
        Assert.Equal(Math.Sqrt(0.375) * Math.Exp(-0.5), bleu[1], 9);
        Assert.Equal(0.4548979945570264, bleu[0], 15);
        Assert.Equal(0.37142265718026374, bleu[1], 15);
    }

    [Fact]
    public void Bleu_ClosestReferenceTiesToShorter_AndSmoothedZeroGuesses()
    {
        // hyp 3 words; refs of 4 and 2 words are both 1 away → the shorter (2) is used, so no brevity penalty.
        // 1..3-grams all match; 4-grams: 0 correct of 0 guesses → (1e-15)/(1e-9) = 1e-6, so BLEU-4 ≈ 1e-6^(1/4).
        double[] bleu = CaptionMetrics.Bleu([S("the cat sat", "the cat sat on", "a cat")]);
        Assert.Equal(1.0, bleu[0], 8);
        Assert.Equal(1.0, bleu[2], 8);
        Assert.Equal(Math.Pow(1e-6, 0.25), bleu[3], 9);
        Assert.Equal(0.03162277658719003, bleu[3], 15);
    }

    [Fact]
    public void RougeL_BestPrecisionAndRecallFromDifferentReferences()
    {
        // "the red chair" vs "red chair": LCS 2 → P 2/3, R 1; vs "the chair by the door": LCS 2 → P 2/3, R 2/5.
        // F = (1+1.2²)·(2/3)·1 / (1 + 1.2²·2/3) = 1.62667/1.96 = 0.829932; second sample shares nothing → 0.
        var (mean, perSample) = CaptionMetrics.RougeL([S("the red chair", "red chair", "the chair by the door"), S("blue", "green")]);
        Assert.Equal(2.44 * (2.0 / 3) / 1.96, perSample[0], 12);
        Assert.Equal(0.0, perSample[1]);
        Assert.Equal(0.4149659863945578, mean, 12);
    }

    [Fact]
    public void RougeL_SplitsOnSingleSpaces()
    {
        // "a  b" is ["a", "", "b"] (3 tokens): LCS with "a b" = 2 → P 2/3, R 1.
        var (_, perSample) = CaptionMetrics.RougeL([S("a  b", "a b")]);
        Assert.Equal(2.44 * (2.0 / 3) / (1 + 1.44 * (2.0 / 3)), perSample[0], 12);
    }

    [Fact]
    public void Cider_IdfFromReferences_BigramLengthPenalty()
    {
        // N = 2, every n-gram has df 1 → weight = tf·ln 2.
        // Sample 1 "red chair" vs "red chair": cos 1 for n = 1, 2; n = 3, 4 empty → 0; mean 0.5; ×10 = 5.
        // Sample 2 "table" vs "brown table": n = 1 cos = ln2² / (ln2 · √2 ln2) = 1/√2; bigram lengths 0 vs 1 →
        // penalty e^(-1/72); n = 2..4 have an empty side → 0. Score = 10 · (1/√2 · e^(-1/72)) / 4.
        var (mean, perSample) = CaptionMetrics.Cider([S("red chair", "red chair"), S("table", "brown table")]);
        Assert.Equal(5.0, perSample[0], 12);
        Assert.Equal(10 * Math.Exp(-1.0 / 72) / Math.Sqrt(2) / 4, perSample[1], 12);
        Assert.Equal(3.3716921748800703, mean, 12);
    }

    [Fact]
    public void Cider_DividesByNumberOfReferences()
    {
        // Two samples, each hypothesis equal to one of two references; the other reference shares nothing.
        // Sample 1 "red chair" refs {"red chair", "door"}: df(red)=df(chair)=df(red chair)=1, df(door)=1.
        // cos with "red chair" = 1 (n = 1, 2), with "door" = 0 and a length penalty e^(-1/72) on zero → sum over refs
        // [1, 1, 0, 0]; mean 0.5; /2 refs; ×10 = 2.5.
        var (_, perSample) = CaptionMetrics.Cider([S("red chair", "red chair", "door"), S("lamp", "sofa")]);
        Assert.Equal(2.5, perSample[0], 12);
        Assert.Equal(0.0, perSample[1], 12);
    }

    static string ValPath => Path.Combine(TestPaths.Data, "scanqa", "ScanQA_v1.0_val.json");

    [Fact]
    public void Load_OfficialVal_SeedIdsAndPrompts()
    {
        var data = ScanQa.Load(ValPath);
        Assert.Equal(4675, data.Count);
        Assert.Equal(71, data.Questions.Select(q => q.SceneId).Distinct().Count());
        var first = data.Questions[0];
        Assert.Equal("scanqa_val-scene0011-0_0", first.Id);
        Assert.Equal("<image> What color is the chair in the kitchen? Answer the question simply.", first.Prompt);
        Assert.Equal(["dark brown", "brown"], first.Answers);
        Assert.Equal("scannet/scene0011_00", first.VideoKey);
    }

    [Fact]
    public void Score_ExactMatchIsRawAndCaseSensitive_IdsNormalised()
    {
        var data = ScanQa.Load(ValPath);
        var two = data.Questions.Take(2).ToList();
        var predictions = new List<Prediction>
        {
            new("scanqa_val-scene0011-0_7", "brown."),   // id normalised to _0; EM fails on the dot
            new("scanqa_val-scene0011-1_0", " Brown "),  // stripped, but case-sensitive → EM 0
        };
        var subset = new ScanQaDataset("test", two);
        var scores = ScanQa.Score(predictions, subset);
        Assert.Equal(0.0, scores.ExactMatch);
        Assert.Equal(2, scores.Questions);
        var exact = ScanQa.Score([new("scanqa_val-scene0011-0_0", "brown"), new("scanqa_val-scene0011-1_0", "dark brown")], subset);
        Assert.Equal(1.0, exact.ExactMatch);
        Assert.Equal(1.0, exact.Bleu1, 8);
    }

    [Fact]
    public void Score_AllFirstAnswers_OnFullVal()
    {
        var data = ScanQa.Load(ValPath);
        var predictions = data.Questions.Select(q => new Prediction(q.Id, q.Answers[0])).ToList();
        var scores = ScanQa.Score(predictions, data);
        Assert.Equal(4675, scores.Questions);
        Assert.Equal(1.0, scores.ExactMatch);
        Assert.Equal(1.0, scores.RougeL, 12);
        Assert.Equal(1.0, scores.Bleu1, 6);
    }

    [Fact]
    public void Score_DuplicateAfterNormalisation_IsAnError()
    {
        var data = ScanQa.Load(ValPath);
        var subset = new ScanQaDataset("test", data.Questions.Take(1).ToList());
        var e = Assert.Throws<PredictionMismatchException>(() =>
            ScanQa.Score([new("scanqa_val-scene0011-0_0", "brown"), new("scanqa_val-scene0011-0_1", "brown")], subset));
        Assert.Contains("1 id(s) predicted more than once", e.Message);
    }
}
