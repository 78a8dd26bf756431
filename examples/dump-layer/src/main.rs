//! Using hidden-dims' libraries from another crate: load a chat model (GGUF file or Hugging
//! Face directory), run one prompt through its chat template, and write the residual stream
//! at the last prompt token of one layer as a safetensors file (`resid.{layer}`, `[1, d]`,
//! the tensor `act-dump --layers LAYER` writes for that prompt).
//!
//!     cargo run --release -p dump-layer -- MODEL LAYER PROMPT OUT.safetensors
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use hd_formats::tensors::{resid_name, Tensor, TensorFile};
use hd_lm::{Model, Positions, PromptFormat, Request};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, layer, prompt, out] = args.as_slice() else {
        eprintln!("usage: dump-layer MODEL LAYER PROMPT OUT.safetensors");
        return ExitCode::from(2);
    };
    let Ok(layer) = layer.parse::<usize>() else {
        eprintln!(
            "dump-layer: LAYER: expected a hidden-state index (0 = embeddings), found {layer:?}"
        );
        return ExitCode::from(2);
    };
    match dump(Path::new(model), layer, prompt, Path::new(out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dump-layer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dump(
    model: &Path,
    layer: usize,
    prompt: &str,
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::load(model)?;
    let n_layers = model.config.num_layers;
    if layer > n_layers {
        return Err(
            format!("layer {layer} is past the model's last hidden state ({n_layers})").into(),
        );
    }
    let ids = model.encode_prompt(prompt, &PromptFormat::default())?;
    let request = Request {
        capture_layers: vec![layer],
        capture_positions: Positions::Last,
        interventions: Vec::new(),
        logits: false,
    };
    let output = model.forward().run(&[ids.as_slice()], &request)?;
    let (_, states) = output
        .captured
        .into_iter()
        .next()
        .ok_or("the forward pass captured nothing")?;
    let mut file = TensorFile::new(BTreeMap::from([("prompt".to_string(), prompt.to_string())]));
    file.insert(
        resid_name(layer),
        Tensor::f32(vec![1, states.len()], states)?,
    );
    file.write(out)?;
    Ok(())
}
