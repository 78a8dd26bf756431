//! Times training steps (forward + backward) of the differentiable forward on a model:
//! `cargo run --release -p hd-train --example bench_step -- MODEL [ROWS] [TOKENS] [FIRST_LAYER]`
//! (defaults 8 rows of 120 tokens sharing a 28-token prefix, LoRA rank 16 on all blocks).

use hd_grad::diff::{DiffModel, DiffRequest, Method, Module, Packed};
use std::time::Instant;

fn main() -> hd_train::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: bench_step MODEL [ROWS] [TOKENS] [FIRST_LAYER]");
        std::process::exit(2);
    };
    let arg = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (rows, len, first) = (arg(2, 8), arg(3, 120), arg(4, 0));
    let m = hd_lm::Model::load(std::path::Path::new(path))?;
    let vocab = m.config.vocab_size;
    let seqs: Vec<Vec<u32>> = (0..rows)
        .map(|i| {
            (0..len)
                .map(|j| {
                    if j < 28 {
                        j as u32 + 100
                    } else {
                        ((i * 7919 + j * 104_729) % (vocab - 10)) as u32 + 10
                    }
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
    let packed = Packed::with_shared_prefix(&refs, 64);
    let nl = m.config.num_layers;
    let mut dm = DiffModel::new(m.config.clone(), m.weights)?;
    let method = Method::Lora {
        rank: 16,
        alpha: 32.0,
        modules: Module::ALL.to_vec(),
    };
    dm.make_trainable(&method, first..nl, 1)?;
    // Loss on the last 20 positions of each row.
    let logit_rows: Vec<usize> = (0..rows)
        .flat_map(|i| (len - 21..len - 1).map(move |p| (i, p)))
        .map(|(i, p)| packed.row(i, p))
        .collect();
    let targets: Vec<u32> = (0..rows)
        .flat_map(|i| (len - 20..len).map(move |p| (i, p)))
        .map(|(i, p)| seqs[i][p])
        .collect();
    eprintln!(
        "{rows} rows x {len} tokens = {} packed rows (shared prefix {})",
        packed.n_rows(),
        packed.prefix
    );
    for _ in 0..3 {
        let t0 = Instant::now();
        let start = if first > 0 {
            let o = dm.forward(
                &packed,
                &DiffRequest {
                    capture: vec![first],
                    ..Default::default()
                },
            )?;
            Some((first, o.hidden[0].1.detach()))
        } else {
            None
        };
        let out = dm.forward(
            &packed,
            &DiffRequest {
                logit_rows: Some(logit_rows.clone()),
                start,
                ..Default::default()
            },
        )?;
        let loss = hd_grad::ops::cross_entropy(out.logits.as_ref().expect("logits"), &targets)?
            .mean_all()?;
        let t1 = Instant::now();
        let _g = loss.backward()?;
        eprintln!(
            "forward {:.2} s, backward {:.2} s, loss {:.3}",
            (t1 - t0).as_secs_f64(),
            t1.elapsed().as_secs_f64(),
            loss.to_scalar::<f32>()?
        );
    }
    Ok(())
}
