//! The named hook sets (`inner`, `blocks`, `all`) against transformers' own hooks, when the
//! oracle environment (`make oracle`) is present: a direction projected out at every position
//! of the sets' hidden states, on a tiny seeded Llama both read, and the teacher-forced NLL of
//! given answers compared. Hooks there: `embed_tokens`' output for index 0, decoder layer
//! i−1's output for index i (the last one before the final norm).

use hd_analysis::intervene::{answer_nll, Edit, HookSet, Op, Start};
use hd_lm::{Arch, Model};

const TRANSFORMERS_HOOKS: &str = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
d = json.load(open(sys.argv[1]))
m = AutoModelForCausalLM.from_pretrained(d["dir"], torch_dtype=torch.float32).eval()
v = torch.tensor(d["v"], dtype=torch.float32)
v = v / v.norm()
def proj(h):
    return h - (h @ v)[..., None] * v
def block_hook(mod, inp, out):
    if isinstance(out, tuple):
        return (proj(out[0]),) + tuple(out[1:])
    return proj(out)
res = {}
for name, layers in d["sets"].items():
    hooks = []
    for l in layers:
        if l == 0:
            hooks.append(m.model.embed_tokens.register_forward_hook(lambda mod, i, o: proj(o)))
        else:
            hooks.append(m.model.layers[l - 1].register_forward_hook(block_hook))
    total = 0.0
    for p, a in zip(d["prompts"], d["answers"]):
        ids = torch.tensor([p + a])
        with torch.no_grad():
            lp = torch.log_softmax(m(ids).logits[0].double(), -1)
        for t in range(len(p), len(p) + len(a)):
            total -= lp[t - 1, ids[0, t]].item()
    for h in hooks:
        h.remove()
    res[name] = total
print(json.dumps(res))
"#;

fn direction(d: usize) -> Vec<f32> {
    (0..d)
        .map(|i| (((i * 31 + 7) % 23) as f32 - 11.0) / 7.0)
        .collect()
}

#[test]
fn hook_sets_match_transformers_hooks() {
    let tmp = tempfile::tempdir().unwrap();
    hd_testkit::write_tiny_model(tmp.path(), Arch::Llama, true, 21).unwrap();
    let m = Model::load(tmp.path()).unwrap();
    let nl = m.config.num_layers;
    assert_eq!(HookSet::Inner.layers(nl), (1..nl).collect::<Vec<_>>());
    assert_eq!(HookSet::Blocks.layers(nl), (1..=nl).collect::<Vec<_>>());
    assert_eq!(HookSet::All.layers(nl), (0..=nl).collect::<Vec<_>>());
    assert_eq!(HookSet::parse("all-layers"), Some(HookSet::Inner));
    let prompts: Vec<Vec<u32>> = ["hello there", "make a bomb now"]
        .iter()
        .map(|p| m.encode_prompt(p, &Default::default()).unwrap())
        .collect();
    let answers: Vec<Vec<u32>> = vec![vec![40, 76, 80, 12], vec![7, 99, 3]];
    let v = direction(m.config.hidden_size);
    let sets = [
        ("none", vec![]),
        ("inner", HookSet::Inner.layers(nl)),
        ("blocks", HookSet::Blocks.layers(nl)),
        ("all", HookSet::All.layers(nl)),
    ];
    let mut ours = Vec::new();
    for (name, layers) in &sets {
        let edits: Vec<Edit> = if layers.is_empty() {
            vec![]
        } else {
            vec![Edit {
                layers: layers.clone(),
                op: Op::Project,
                alpha: 1.0,
                v: v.clone(),
                start: Start::All,
            }]
        };
        let (nll, _) = answer_nll(&m, &prompts, &answers, &edits, None).unwrap();
        ours.push((*name, nll));
    }
    // The sets must differ, or the comparison below could not tell them apart.
    for w in ours.windows(2) {
        assert!(
            (w[0].1 - w[1].1).abs() > 1e-3,
            "{} and {} give the same NLL {}",
            w[0].0,
            w[1].0,
            w[0].1
        );
    }
    let Some(py) = hd_testkit::oracle_python() else {
        return;
    };
    let input = serde_json::json!({
        "dir": tmp.path(),
        "v": v,
        "prompts": prompts,
        "answers": answers,
        "sets": sets.iter().map(|(n, l)| (n.to_string(), l.clone())).collect::<std::collections::BTreeMap<_, _>>(),
    });
    let inp = tmp.path().join("in.json");
    std::fs::write(&inp, input.to_string()).unwrap();
    let out = std::process::Command::new(&py)
        .args(["-c", TRANSFORMERS_HOOKS])
        .arg(&inp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transformers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hf: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, nll) in &ours {
        let want = hf[name].as_f64().unwrap();
        eprintln!("{name}: ours {nll:.6}, transformers {want:.6}");
        assert!(
            (nll - want).abs() < 1e-4 * want.abs().max(1.0),
            "{name}: ours {nll} vs transformers {want}"
        );
    }
}
