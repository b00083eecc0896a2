//! The chained op against the same blocks as separate dfdx ops (the convolution op, then the
//! fused BN op, each block's output a tensor on the tape): the same kernels in the same order,
//! so the same bits.
use super::*;
use crate::engine::bn_kernel::{batch_norm_eval, batch_norm_train};
use crate::engine::conv::{conv2d, Im2colCache};
use crate::engine::model::{one_hot, Net, Widths, CLASSES};
use dfdx::tensor_ops::Backward as _;

/// One block as separate ops: what the training forward ran before the chain.
fn separate_block(
    block: &mut ConvBn,
    x: Activations<Taped>,
    mode: BnMode,
    pass: &mut PassConfig,
    observer: &mut Observer,
) -> Activations<Taped> {
    let g = geometry(*x.shape(), &block.spec);
    let bias = pass.conv_bias.then_some(&block.bias);
    let h = conv2d(x, &block.weight, bias, g, pass.cache);
    let observe = Observe {
        measure: true,
        keep_pre_relu: true,
    };
    let input = to_host(&h);
    let running_mean_pre = to_host(&block.bn.running_mean);
    let running_var_pre = to_host(&block.bn.running_var);
    let n = h.shape().1 * h.shape().2 * h.shape().3;
    let fused = match mode {
        BnMode::Train => batch_norm_train(h, &mut block.bn, true, observe),
        BnMode::Eval => batch_norm_eval(h, &block.bn, true, observe),
    };
    observer.blocks.push(BlockObservation {
        n,
        measured: fused.measured.expect("measured"),
        running_mean_pre,
        running_var_pre,
        running_mean_post: to_host(&block.bn.running_mean),
        running_var_post: to_host(&block.bn.running_var),
        activations: fused.pre_relu.map(|output| BnActivations { input, output }),
        filters: Default::default(),
    });
    fused.out
}

/// Logits, every parameter's gradient and the running statistics after one step, and the
/// observations, from the chain or from the separate ops.
type Outcome = (
    Vec<f32>,
    Vec<Vec<f32>>,
    Vec<Vec<f32>>,
    Vec<BlockObservation>,
);

fn run(chained: bool, modes: &[BnMode], conv_bias: bool) -> Outcome {
    let dev = Cpu::seed_from_u64(5);
    let widths: Widths = "6,8,12".parse().expect("widths");
    let mut net = Net::new(&dev, 3, &widths);
    // Running statistics away from their initial 0 and 1, so eval mode uses real ones.
    for block in &mut net.blocks {
        let c = block.bn.channels();
        block.bn.running_mean = dev.sample_normal_like(&(c,));
        block.bn.running_var = dev.sample_uniform_like(&(c,)) + 0.5;
        block.bias = dev.sample_normal_like(&(c,));
    }
    let x: Activations<NoneTape> = dev.sample_normal_like(&(3, 5, 11, 9));
    let labels: Vec<u8> = (0..5).map(|i| (i * 3 % 10) as u8).collect();
    let targets = dev.tensor_from_vec(one_hot(&labels), (labels.len(), Const::<CLASSES>));
    let mut cache = Im2colCache::default();
    let mut pass = PassConfig {
        conv_bias,
        cache: &mut cache,
    };
    let mut observer = Observer {
        keep_activations: true,
        ..Observer::default()
    };
    let traced = x.traced(net.alloc_grads().expect("gradients"));
    let features = if chained {
        train_blocks(
            traced,
            &mut net.blocks,
            modes,
            &mut pass,
            Some(&mut observer),
        )
    } else {
        let mut h = traced;
        for (block, &mode) in net.blocks.iter_mut().zip(modes) {
            h = separate_block(block, h, mode, &mut pass, &mut observer);
        }
        h
    };
    let logits = net.classify(features);
    let logits_host = to_host(&logits);
    let grads = dfdx::losses::cross_entropy_with_logits_loss(logits, targets).backward();
    let mut params = Vec::new();
    let mut running = Vec::new();
    for block in &net.blocks {
        params.push(grads.get(&block.weight).as_vec());
        params.push(grads.get(&block.bias).as_vec());
        params.push(grads.get(&block.bn.scale).as_vec());
        params.push(grads.get(&block.bn.bias).as_vec());
        running.push(to_host(&block.bn.running_mean));
        running.push(to_host(&block.bn.running_var));
    }
    params.push(grads.get(&net.head.weight).as_vec());
    (logits_host, params, running, observer.blocks)
}

#[test]
fn the_chain_computes_what_the_separate_ops_compute_bit_for_bit() {
    use BnMode::{Eval, Train};
    for (modes, conv_bias) in [
        ([Train, Train, Train], false),
        ([Train, Eval, Train], true),
        ([Eval, Eval, Eval], false),
    ] {
        let what = format!("{modes:?}, conv bias {conv_bias}");
        let (logits, params, running, seen) = run(true, &modes, conv_bias);
        let (logits_ref, params_ref, running_ref, seen_ref) = run(false, &modes, conv_bias);
        assert_eq!(logits, logits_ref, "{what}: logits");
        assert_eq!(params.len(), params_ref.len());
        for (i, (a, b)) in params.iter().zip(&params_ref).enumerate() {
            assert_eq!(a, b, "{what}: gradient {i}");
            let in_graph = i % 4 != 1 || conv_bias;
            assert_eq!(
                a.iter().any(|&v| v != 0.0),
                in_graph,
                "{what}: gradient {i} zero only outside the graph"
            );
        }
        assert_eq!(running, running_ref, "{what}: running statistics");
        assert_eq!(seen.len(), 3);
        for (a, b) in seen.iter().zip(&seen_ref) {
            assert_eq!(a.n, b.n);
            assert_eq!(a.measured.input, b.measured.input, "{what}");
            assert_eq!(a.measured.output, b.measured.output, "{what}");
            assert_eq!(a.measured.relu, b.measured.relu, "{what}");
            assert_eq!(a.running_mean_pre, b.running_mean_pre);
            assert_eq!(a.running_var_post, b.running_var_post);
            let (a, b) = (a.activations.as_ref(), b.activations.as_ref());
            let (a, b) = (a.expect("kept"), b.expect("kept"));
            assert_eq!((&a.input, &a.output), (&b.input, &b.output), "{what}");
        }
    }
}
