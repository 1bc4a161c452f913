namespace SpatialMllm.Research.Evaluation;

/// <summary>The ten VSI-Bench question types, their kind, and the eight reported tasks.</summary>
public static class VsiBenchQuestionTypes
{
    public const string ObjectCounting = "object_counting";
    public const string ObjectAbsDistance = "object_abs_distance";
    public const string ObjectSizeEstimation = "object_size_estimation";
    public const string RoomSizeEstimation = "room_size_estimation";
    public const string ObjectRelDistance = "object_rel_distance";
    public const string ObjectRelDirectionEasy = "object_rel_direction_easy";
    public const string ObjectRelDirectionMedium = "object_rel_direction_medium";
    public const string ObjectRelDirectionHard = "object_rel_direction_hard";
    public const string RoutePlanning = "route_planning";
    public const string AppearanceOrder = "obj_appearance_order";

    /// <summary>The merged task that stands for the three rel-direction types in every report.</summary>
    public const string RelDirectionTask = "object_rel_direction";

    /// <summary>Numeric-answer types (scored by MRA), in the papers' column order.</summary>
    public static IReadOnlyList<string> Numeric { get; } =
        [ObjectCounting, ObjectAbsDistance, ObjectSizeEstimation, RoomSizeEstimation];

    /// <summary>Multiple-choice types (scored by accuracy).</summary>
    public static IReadOnlyList<string> MultipleChoice { get; } =
        [ObjectRelDistance, ObjectRelDirectionEasy, ObjectRelDirectionMedium, ObjectRelDirectionHard, RoutePlanning, AppearanceOrder];

    public static IReadOnlyList<string> RelDirection { get; } =
        [ObjectRelDirectionEasy, ObjectRelDirectionMedium, ObjectRelDirectionHard];

    public static IReadOnlyList<string> All { get; } = [.. Numeric, .. MultipleChoice];

    /// <summary>The 8 tasks of the papers' tables, in their column order (rel-direction as one task).</summary>
    public static IReadOnlyList<string> Tasks { get; } =
        [.. Numeric, ObjectRelDistance, RelDirectionTask, RoutePlanning, AppearanceOrder];

    public static bool IsNumeric(string type) => Numeric.Contains(type);
    public static bool IsMultipleChoice(string type) => MultipleChoice.Contains(type);
    public static bool IsRelDirection(string type) => RelDirection.Contains(type);
    public static bool IsKnown(string type) => All.Contains(type);

    /// <summary>Short column names used by the papers' tables.</summary>
    public static string TaskLabel(string typeOrTask) => typeOrTask switch
    {
        ObjectCounting => "Obj. Count",
        ObjectAbsDistance => "Abs. Dist.",
        ObjectSizeEstimation => "Obj. Size",
        RoomSizeEstimation => "Room Size",
        ObjectRelDistance => "Rel. Dist.",
        RelDirectionTask => "Rel. Dir.",
        ObjectRelDirectionEasy => "  easy",
        ObjectRelDirectionMedium => "  medium",
        ObjectRelDirectionHard => "  hard",
        RoutePlanning => "Route Plan",
        AppearanceOrder => "Appr. Order",
        _ => typeOrTask,
    };
}
