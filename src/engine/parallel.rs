//! How finely the engine's host loops (convolution, BatchNorm, buffer fills) split their work
//! over the training pool's threads.

/// Elements one rayon task handles at least: below this, splitting costs more than it gains
/// (digit batches give matrices of a few thousand elements, late layers channels of a few hundred).
pub const MIN_TASK_ELEMENTS: usize = 1 << 15;

/// Chunks of `chunk` elements per task so that a task holds at least [`MIN_TASK_ELEMENTS`].
pub fn chunks_per_task(chunk: usize) -> usize {
    MIN_TASK_ELEMENTS.div_ceil(chunk.max(1))
}
