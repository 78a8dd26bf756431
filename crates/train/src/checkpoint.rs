//! Checkpoints: the trainable parameters, AdamW moments, the step and the loss history in one
//! safetensors file, with a fingerprint of the run (base model hash, training data hash,
//! hyper-parameters) so a resumed run can refuse a checkpoint that belongs to another one.
//!
//! Tensors: `param.{name}`, `adam_m.{name}`, `adam_v.{name}` (f32, names as
//! [`hd_grad::diff::DiffModel::trainable`]), `history` `[steps, 6]` f64 (step, epoch, lr, loss,
//! grad_norm, target_tokens). Metadata: the standard keys (tool, version, argv), `step`,
//! and `fingerprint.*` entries.

use crate::error::{Result, TrainError};
use crate::train::{StepLog, Trainer};
use hd_formats::tensors::{Tensor as FTensor, TensorFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Metadata key prefix of the run fingerprint.
pub const FINGERPRINT: &str = "fingerprint.";

/// Writes the trainer's state atomically to `path`. `fingerprint` identifies the run
/// (compared on resume); `base` holds the standard metadata.
pub fn save(
    path: &Path,
    trainer: &Trainer,
    fingerprint: &BTreeMap<String, String>,
    base: BTreeMap<String, String>,
) -> Result<()> {
    let mut meta = base;
    meta.insert("step".into(), trainer.step.to_string());
    for (k, v) in fingerprint {
        meta.insert(format!("{FINGERPRINT}{k}"), v.clone());
    }
    let mut f = TensorFile::new(meta);
    let params = trainer.params()?;
    let opt = trainer.optimizer();
    for (i, (name, v)) in trainer.model.trainable().iter().enumerate() {
        let shape = v.dims().to_vec();
        f.insert(
            format!("param.{name}"),
            FTensor::f32(shape.clone(), params[i].clone())?,
        );
        f.insert(
            format!("adam_m.{name}"),
            FTensor::f32(shape.clone(), opt.m[i].clone())?,
        );
        f.insert(
            format!("adam_v.{name}"),
            FTensor::f32(shape, opt.v[i].clone())?,
        );
    }
    let hist: Vec<f64> = trainer
        .history
        .iter()
        .flat_map(|h| {
            [
                h.step as f64,
                h.epoch,
                h.lr,
                h.loss,
                h.grad_norm,
                h.target_tokens as f64,
            ]
        })
        .collect();
    f.insert(
        "history",
        FTensor::f64(vec![trainer.history.len(), 6], hist)?,
    );
    f.write(path)?;
    Ok(())
}

/// The `step-*.safetensors` checkpoints in `dir`, in name order (oldest first: the step
/// numbers are written zero-padded).
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("step-") && n.ends_with(".safetensors"))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The checkpoint to resume from: `path` itself, or the latest `step-*.safetensors` in it
/// when it is a directory.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        if !path.exists() {
            return Err(TrainError::Checkpoint {
                path: path.into(),
                msg: "no such checkpoint file or directory".into(),
            });
        }
        return Ok(path.into());
    }
    let mut found = list(path).map_err(|e| TrainError::io(path, "cannot list checkpoints", e))?;
    found.pop().ok_or_else(|| TrainError::Checkpoint {
        path: path.into(),
        msg: "no step-*.safetensors checkpoint in this directory".into(),
    })
}

/// Loads `path` into the trainer after checking its fingerprint against `fingerprint`
/// (the first difference is the error, e.g. another base model).
pub fn load(
    path: &Path,
    trainer: &mut Trainer,
    fingerprint: &BTreeMap<String, String>,
) -> Result<()> {
    let bad = |msg: String| TrainError::Checkpoint {
        path: path.into(),
        msg,
    };
    let f = TensorFile::read(path)?;
    check_fingerprint(&f, fingerprint).map_err(bad)?;
    let step: usize = f
        .metadata
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("missing 'step' metadata".into()))?;
    let names: Vec<(String, Vec<usize>)> = trainer
        .model
        .trainable()
        .iter()
        .map(|(n, v)| (n.clone(), v.dims().to_vec()))
        .collect();
    let get = |prefix: &str, name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = f.get(&format!("{prefix}.{name}"))?;
        if t.shape != shape {
            return Err(bad(format!(
                "tensor '{prefix}.{name}' has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(t.to_f32_vec())
    };
    let mut params = Vec::new();
    let mut m = Vec::new();
    let mut v = Vec::new();
    for (name, shape) in &names {
        params.push(get("param", name, shape)?);
        m.push(get("adam_m", name, shape)?);
        v.push(get("adam_v", name, shape)?);
    }
    let history = read_history(f.get("history")?, step).map_err(bad)?;
    if step > trainer.total_steps() {
        return Err(bad(format!(
            "checkpoint is at step {step}, beyond this run's {} steps",
            trainer.total_steps()
        )));
    }
    trainer
        .restore(&params, m, v, step, history)
        .map_err(|e| bad(e.to_string()))
}

/// The first difference between the checkpoint's fingerprint and the run's, as a message.
fn check_fingerprint(
    f: &TensorFile,
    fingerprint: &BTreeMap<String, String>,
) -> std::result::Result<(), String> {
    for (k, want) in fingerprint {
        match f.metadata.get(&format!("{FINGERPRINT}{k}")) {
            Some(g) if g == want => {}
            Some(g) => {
                return Err(format!(
                    "checkpoint of another run: its {k} is {g}, this run's is {want}"
                ))
            }
            None => {
                return Err(format!(
                    "not a safety-tune checkpoint (no '{FINGERPRINT}{k}' metadata)"
                ))
            }
        }
    }
    Ok(())
}

/// The loss history of a checkpoint at `step` (the `history` tensor, `[step, 6]`).
fn read_history(h: &FTensor, step: usize) -> std::result::Result<Vec<StepLog>, String> {
    if h.shape != [step, 6] {
        return Err(format!(
            "tensor 'history' has shape {:?}, expected [{step}, 6]",
            h.shape
        ));
    }
    Ok(h.to_f64_vec()
        .chunks_exact(6)
        .map(|r| StepLog {
            step: r[0] as usize,
            epoch: r[1],
            lr: r[2],
            loss: r[3],
            grad_norm: r[4],
            target_tokens: r[5] as usize,
        })
        .collect())
}
