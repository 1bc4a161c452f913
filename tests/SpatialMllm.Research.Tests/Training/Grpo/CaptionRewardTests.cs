using SpatialMllm.Research.Evaluation;
using SpatialMllm.Research.Tests.Evaluation;
using SpatialMllm.Research.Training.Grpo;

namespace SpatialMllm.Research.Tests.Training.Grpo;

/// <summary>ScanQA-style rewards: CIDEr-D and BLEU-4 of one completion's answer, as ScanQA's scorer computes them, and
/// ScanQA's question file as GRPO's data.</summary>
public class CaptionRewardTests
{
    static GrpoQuestion Q(string id, params string[] references) => new(id, "v.mp4", "<image> q Answer the question simply.", references[0], References: references);
    static GrpoCompletion C(GrpoQuestion q, string text) => new(q, text, [1, 2], false);

    [Fact]
    public void Cider_reward_is_ScanQAs_CIDEr_of_the_answer_with_document_frequencies_over_the_training_questions()
    {
        GrpoQuestion[] questions = [Q("a", "brown", "brown one"), Q("b", "on the desk", "on desk"), Q("c", "two pillows", "two")];
        string[] answers = ["brown.", "<think>it is there</think><answer>on desk</answer>", "three pillows"];
        var cider = Rewards.Cider(questions);
        var rewards = questions.Select((q, i) => cider.Score(C(q, answers[i]))!.Value).ToArray();
        // When the questions trained on are the ones scored, each reward is that sample's CIDEr-D in ScanQA's scorer
        // (prediction stripped, trailing dots removed; the <answer> block's content).
        var (_, perSample) = CaptionMetrics.Cider([new("brown", questions[0].References!), new("on desk", questions[1].References!),
            new("three pillows", questions[2].References!)]);
        for (int i = 0; i < questions.Length; i++) Assert.Equal(perSample[i], rewards[i], 12);
        Assert.True(rewards[0] > rewards[2] && rewards[1] > rewards[2], "an answer among the references scores above a wrong one");
        Assert.Null(cider.Score(C(new GrpoQuestion("vsi", "v.mp4", "p", "3"), "3")));
    }

    [Fact]
    public void Bleu_reward_is_BLEU_4_of_one_sample_and_the_rewards_are_built_in_by_name()
    {
        var q = Q("a", "the brown chair by the door", "a brown chair");
        var bleu = Rewards.ByName("bleu", [q]);
        Assert.Equal(CaptionMetrics.Bleu([new("the brown chair by the door", q.References!)])[3], bleu.Score(C(q, " the brown chair by the door. "))!.Value, 12);
        Assert.Equal(1.0, bleu.Score(C(q, "the brown chair by the door"))!.Value, 9);
        Assert.True(bleu.Score(C(q, "a table"))!.Value < 0.01);
        Assert.Null(bleu.Score(C(new GrpoQuestion("vsi", "v.mp4", "p", "3"), "3")));
        Assert.Equal("cider", Rewards.ByName("cider", [q]).Name);
        Assert.Contains("cider", Rewards.Names);
        new GrpoConfig { RewardFuncs = "cider,bleu" }.Validate();
    }

    [Fact]
    public void A_ScanQA_question_file_is_GRPO_data_with_its_answers_as_references()
    {
        var scanQa = new MiniScanQa("grpo-scanqa");
        var questions = GrpoTrainer.LoadQuestions(scanQa.DatasetPath, null);
        Assert.Equal(MiniScanQa.QuestionCount, questions.Count);
        var first = questions.Single(q => q.Id.EndsWith("scanqa_val-scene0001-1_0", StringComparison.Ordinal));
        Assert.Equal(["on desk", "on desk one"], first.References!);
        Assert.Equal(Path.Combine(scanQa.Root, "scene0001_00.mp4"), first.Video);
        Assert.Equal("<image> Where is the lamp placed? Answer the question simply.", first.Prompt);
        Assert.Null(first.VsiBench);
        File.Delete(first.Video);
        var missing = Assert.Throws<FileNotFoundException>(() => GrpoTrainer.LoadQuestions(scanQa.DatasetPath, null));
        Assert.Contains("scannet/scene0001_00", missing.Message);
    }
}
