//! Between steps, the lab's measurements (issue 6; BN-METRICS §3-4, §6-7): held-out evaluation
//! (three-way with PreciseBN statistics), PreciseBN population statistics, the phantom-gradient
//! probe and the folding check, each sent as its record.
use super::Trainer;
use crate::engine::folding;
use crate::engine::forward::{InferenceStats, PassConfig};
use crate::engine::population::{self, Population};
use crate::protocol::{Evaluation, Event, FoldingReport, PopulationReport, ProbeReport};

impl Trainer {
    /// At every `eval_every` steps a held-out evaluation; at every `lab_every` steps (and before
    /// the first) also PreciseBN statistics, making it three-way, and the phantom-gradient probe.
    pub(super) fn evaluate_and_probe(&mut self) {
        let lab_due = self.cfg.lab_every > 0 && self.step.is_multiple_of(self.cfg.lab_every);
        if lab_due {
            let population = self.report_population();
            self.evaluate(Some(&population));
            self.report_probe();
        } else if self.step.is_multiple_of(self.cfg.eval_every) {
            self.evaluate(None);
        }
    }

    /// PreciseBN statistics over `precise_samples` shuffled training images. The sample is drawn
    /// from the seed and the step, so it is repeatable and an estimate and its `apply` agree.
    pub(super) fn population(&mut self) -> Population {
        let train = &self.data.train;
        let seed = self.cfg.seed ^ self.step.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let batches = population::shuffled_batches(
            train.len(),
            self.cfg.precise_samples.max(self.cfg.batch_size),
            self.cfg.batch_size,
            seed,
        );
        let mut pass = PassConfig {
            conv_bias: self.cfg.conv_bias,
            cache: &mut self.cache,
        };
        let moments = population::moments_of_batches(
            &self.net,
            train,
            population::gathered(train, &batches),
            &mut pass,
        );
        population::pool(&moments, batches.iter().map(Vec::len).sum())
    }

    /// Population statistics, compared with the batches training will see next in the current
    /// order (an epoch's worth, within 1-4 times the population's batch count).
    pub(super) fn report_population(&mut self) -> Population {
        let population = self.population();
        let train = &self.data.train;
        let population_batches = (population.samples / self.cfg.batch_size).max(1);
        let count =
            (train.len() / self.cfg.batch_size).clamp(population_batches, 4 * population_batches);
        let mut pass = PassConfig {
            conv_bias: self.cfg.conv_bias,
            cache: &mut self.cache,
        };
        let order = population::moments_of_batches(
            &self.net,
            train,
            population::upcoming_batches(&self.batches, train, count),
            &mut pass,
        );
        let running_var: Vec<Vec<f32>> = self.net.blocks.iter().map(|b| b.running_var()).collect();
        self.outbox.send(Event::Population(PopulationReport {
            step: self.step,
            samples: population.samples,
            order: self.batches.order(),
            order_batches: count,
            layers: population::compare(&population, &order, &running_var),
        }));
        population
    }

    /// The three bars of the phantom-gradient probe on the batch training will see next.
    pub(super) fn report_probe(&mut self) {
        let train = &self.data.train;
        let batch = self.batches.clone().next(train);
        let layers = self.net.probe(
            &batch.pixels,
            &batch.labels,
            (train.height, train.width),
            &mut self.cache,
        );
        self.outbox.send(Event::Probe(ProbeReport {
            step: self.step,
            batch: batch.labels.len(),
            layers,
        }));
    }

    /// Fold every conv + BN, check the folded network on the held-out set, time both.
    pub(super) fn report_folding(&mut self) {
        let check = folding::check(
            &self.net,
            &self.heldout,
            self.cfg.conv_bias,
            &mut self.cache,
        );
        let per_image = |s: f64| s * 1e6 / check.samples.max(1) as f64;
        self.outbox.send(Event::Folding(FoldingReport {
            step: self.step,
            samples: check.samples,
            max_abs_diff: check.max_abs_diff,
            unfolded_us_per_image: per_image(check.unfolded_s),
            folded_us_per_image: per_image(check.folded_s),
        }));
    }

    /// Held-out loss and accuracy with batch and running statistics, and with `population`'s.
    pub(super) fn evaluate(&mut self, population: Option<&Population>) {
        let mut pass = PassConfig {
            conv_bias: self.cfg.conv_bias,
            cache: &mut self.cache,
        };
        let batch_stats = self
            .heldout
            .evaluate(&self.net, InferenceStats::Batch, &mut pass);
        let running_stats = self
            .heldout
            .evaluate(&self.net, InferenceStats::Running, &mut pass);
        let precise_stats = population.map(|p| {
            let precise = population::precise_net(&self.net, p);
            self.heldout
                .evaluate(&precise, InferenceStats::Running, &mut pass)
        });
        self.last_evaluated = Some(self.step);
        self.outbox.send(Event::Evaluation(Evaluation {
            step: self.step,
            samples: self.heldout.samples(),
            batch_stats,
            running_stats,
            precise_stats,
        }));
    }
}
