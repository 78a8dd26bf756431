//! Trigger-token pruning (`token-prune`): delete, one step at a time, the user-text tokens
//! that most support a refusal target, until the model stops refusing or a deletion budget
//! is spent.
//!
//! This is the local, model-free form of the paper's attack. The paper's reference rewrites
//! prompts with a 70B model and scores them with a remote judge; here nothing is rewritten:
//! tokens are only deleted, chosen by attribution on the attacked model itself.
//!
//! Every step works on **text**, as an attacker would: the kept user tokens are decoded back
//! to a string, and the next step encodes that string through the chat template again. Only
//! user-text positions ([`crate::tokens::encode_with_user_span`]) are ever deleted, never the
//! template.
//!
//! Four ways to choose the tokens ([`Method`]) share the same loop and budget: AttnLRP
//! relevance to the target (ours), the plain gradient norm, exact leave-one-out occlusion,
//! and seeded random choice (the control).

use std::collections::HashMap;

use crate::error::{AnalysisError, Result};
use crate::intervene::{log_softmax, project};
use crate::refusal::RefusalTokens;
use crate::tokens::{encode_with_user_span, Encoded};
use hd_grad::attrib::{Target, Traced};
use hd_grad::diff::DiffModel;
use hd_grad::Rules;
use hd_lm::forward::{KvCache, Positions, Prefix, Request};
use hd_lm::NoHook;
use hd_lm::{Model, PromptFormat};
use hd_rng::{hash_str, SplitMix64};

/// How the tokens to delete are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Gradient × input of the target with the AttnLRP rules (ours).
    Attribution,
    /// Seeded uniform choice among the user tokens (the control).
    Random,
    /// The norm of the plain gradient of the target at each token's embedding.
    GradNorm,
    /// Leave-one-out: how much the target drops when the token alone is removed.
    Occlusion,
}

impl Method {
    /// Every method, in the order of the command line's default list.
    pub const ALL: [Method; 4] = [
        Method::Attribution,
        Method::Random,
        Method::GradNorm,
        Method::Occlusion,
    ];

    /// The name in flags and CSVs.
    pub fn name(self) -> &'static str {
        match self {
            Method::Attribution => "attribution",
            Method::Random => "random",
            Method::GradNorm => "gradnorm",
            Method::Occlusion => "occlusion",
        }
    }

    /// Parses a [`Method::name`].
    pub fn parse(s: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// What the deletions are chosen to lower.
#[derive(Debug, Clone, PartialEq)]
pub enum PruneTarget {
    /// The first-token refusal score at the last prompt position.
    Refusal,
    /// The projection `c·h_ℓ` of the last prompt position's state on a component, oriented
    /// so that larger means more like the tuned model (shift-svd's sign convention).
    Component {
        /// Hidden-state index ℓ (HF numbering).
        layer: usize,
        /// The direction `c` (`[d]`).
        direction: Vec<f32>,
    },
}

/// The loop's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest fraction of a prompt's user tokens that may be deleted (0 < budget ≤ 1).
    pub budget: f64,
    /// Absolute cap on deleted tokens per prompt.
    pub max_tokens: usize,
    /// Tokens deleted per step.
    pub step: usize,
    /// Seed of the random control.
    pub seed: u64,
    /// Chat formatting of the prompts.
    pub format: PromptFormat,
    /// Prompts per traced (attribution, gradnorm) forward pass.
    pub batch: usize,
    /// Run the template's head once and share it (scoring, traced passes, answers); off,
    /// every prompt is computed on its own.
    pub share_prefix: bool,
    /// Rules of the attribution method (AttnLRP, the paper's; `Exact` for gradient × input
    /// where a family has no AttnLRP rules).
    pub rules: Rules,
}

impl Settings {
    /// Tokens that may be deleted from a prompt of `n_user` user tokens:
    /// `⌊budget·n_user⌋`, at least one, at most `max_tokens` and `n_user`.
    pub fn cap(&self, n_user: usize) -> usize {
        let by_share = (self.budget * n_user as f64 + 1e-9).floor() as usize;
        by_share.max(1).min(self.max_tokens).min(n_user)
    }
}

/// One prompt to prune.
#[derive(Debug, Clone)]
pub struct Prompt<'a> {
    /// Its id (seeds the random control, so a prompt's draws do not depend on the others).
    pub id: &'a str,
    /// The user text.
    pub text: &'a str,
}

/// The result of pruning one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The pruned user text, as an attacker would submit it.
    pub text: String,
    /// The deleted tokens' text, in the order deleted.
    pub deleted: Vec<String>,
    /// User tokens of the original prompt.
    pub n_user: usize,
    /// The refusal score of the pruned text (`> 0`: still refused at the first token).
    pub score: f64,
    /// Deletion steps taken.
    pub steps: usize,
}

impl Outcome {
    /// Whether the pruned text gets past the first-token judge.
    pub fn success(&self) -> bool {
        self.score <= 0.0
    }
}

/// The attacked model in both forms: the fast runtime (scores, occlusion, generation) and the
/// differentiable decoder (attribution, gradients).
pub struct Pruner<'m> {
    model: &'m Model,
    diff: &'m DiffModel,
    refusal: &'m RefusalTokens,
    target: PruneTarget,
    settings: Settings,
    /// The template's tokens before the user text, run once for every scoring pass.
    prefix: Option<Prefix>,
}

impl std::fmt::Debug for Pruner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner")
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A prompt before any deletion, as every method and repeat starts from it: its encoding,
/// refusal score and target value, and (prefix sharing on) the keys and values of the pass
/// that scored it, which the first step continues. Made by [`Pruner::start`].
#[derive(Debug, Clone)]
pub struct Start {
    /// The prompt's encoding.
    pub enc: Encoded,
    /// First-token refusal score (`> 0`: refused).
    pub score: f64,
    /// The target's value: the refusal score, or the projection on the component.
    pub value: f64,
    cache: Option<KvCache>,
}

/// A prompt in the loop.
struct Live {
    text: String,
    enc: Encoded,
    deleted: Vec<String>,
    cap: usize,
    n_user: usize,
    score: f64,
    value: f64,
    steps: usize,
    done: bool,
}

impl Live {
    fn new(text: &str, s: &Start, cap: usize) -> Self {
        Live {
            text: text.to_string(),
            enc: s.enc.clone(),
            deleted: Vec::new(),
            cap,
            n_user: s.enc.user.len(),
            score: s.score,
            value: s.value,
            steps: 0,
            done: false,
        }
    }
}

/// What a method sees of a prompt at one step.
struct Step<'a> {
    id: &'a str,
    enc: &'a Encoded,
    /// The target's value on `enc`.
    value: f64,
    /// The keys and values of `enc.ids` (from its scoring pass), when prefix sharing is on.
    cache: Option<&'a KvCache>,
}

/// Each prompt's keys and values from its last scoring, with the tokens they hold.
type Caches = Vec<Option<(Vec<u32>, KvCache)>>;

impl<'m> Pruner<'m> {
    /// Checks the target and settings against the model.
    pub fn new(
        model: &'m Model,
        diff: &'m DiffModel,
        refusal: &'m RefusalTokens,
        target: PruneTarget,
        settings: Settings,
    ) -> Result<Self> {
        if !(settings.budget > 0.0 && settings.budget <= 1.0) {
            return Err(AnalysisError::Input(format!(
                "budget {}: expected 0 < budget <= 1",
                settings.budget
            )));
        }
        if settings.step == 0 || settings.max_tokens == 0 || settings.batch == 0 {
            return Err(AnalysisError::Input(
                "step, max_tokens and batch must be at least 1".into(),
            ));
        }
        if let PruneTarget::Component { layer, direction } = &target {
            let (d, l) = (model.config.hidden_size, model.config.num_layers);
            if direction.len() != d || *layer > l {
                return Err(AnalysisError::Input(format!(
                    "component at hidden state {layer} with {} values; the model has hidden \
                     states 0..={l} of width {d}",
                    direction.len()
                )));
            }
        }
        let mut p = Pruner {
            model,
            diff,
            refusal,
            target,
            settings,
            prefix: None,
        };
        let head = template_head(model, &p.settings.format)?;
        if !head.is_empty() && p.settings.share_prefix {
            // Every block: its cache also seeds each prompt's own cache (`values_cached`).
            p.prefix = Some(model.forward().prefix(&head, &p.request(), true)?);
        }
        Ok(p)
    }

    /// The fast runtime's request for the target's value at the last position.
    fn request(&self) -> Request {
        let capture_layers = match &self.target {
            PruneTarget::Refusal => vec![],
            PruneTarget::Component { layer, .. } => vec![*layer],
        };
        Request {
            capture_layers,
            capture_positions: Positions::Last,
            interventions: vec![],
            logits: true,
        }
    }

    /// Encodes a prompt and its user span.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        encode_with_user_span(self.model, text, &self.settings.format)
    }

    /// Scores encoded prompts once, for every method and repeat to start from (prefix
    /// sharing on, each keeps the keys and values of its scoring pass).
    pub fn start(&self, encs: Vec<Encoded>) -> Result<Vec<Start>> {
        let seqs: Vec<&[u32]> = encs.iter().map(|e| e.ids.as_slice()).collect();
        let (vals, caches) = match self.settings.share_prefix {
            true => {
                let mut caches: Caches = vec![None; seqs.len()];
                let v = self.values_cached(&seqs, &mut caches)?;
                (v, caches.into_iter().map(|c| c.map(|(_, k)| k)).collect())
            }
            false => (self.values(&seqs)?, vec![None; seqs.len()]),
        };
        Ok(encs
            .into_iter()
            .zip(vals)
            .zip(caches)
            .map(|((enc, (score, value)), cache)| Start {
                enc,
                score,
                value,
                cache,
            })
            .collect())
    }

    /// Per sequence: (refusal score, target value), every sequence run in full. The target
    /// value is the refusal score for [`PruneTarget::Refusal`] and the projection for a
    /// component.
    fn values(&self, seqs: &[&[u32]]) -> Result<Vec<(f64, f64)>> {
        let (fw, req) = (self.model.forward(), self.request());
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(64) {
            out.extend(self.read_values(&fw.run(chunk, &req)?, chunk.len()));
        }
        Ok(out)
    }

    /// [`Pruner::values`] continuing each sequence's cache from its previous scoring (`None`:
    /// from the template's head): only the tokens after what the cached sequence shares with
    /// the new one run. Leaves each cache holding its new sequence.
    fn values_cached(
        &self,
        seqs: &[&[u32]],
        caches: &mut [Option<(Vec<u32>, KvCache)>],
    ) -> Result<Vec<(f64, f64)>> {
        let fw = self.model.forward();
        let req = self.request();
        let mut out = Vec::with_capacity(seqs.len());
        for (chunk, cs) in seqs.chunks(64).zip(caches.chunks_mut(64)) {
            let mut kv = Vec::with_capacity(chunk.len());
            let mut tails = Vec::with_capacity(chunk.len());
            for (s, c) in chunk.iter().zip(cs.iter_mut()) {
                let (mut cache, keep) = match c.take() {
                    Some((old, cache)) => {
                        let same = hd_lm::common_prefix_len(&[old.as_slice(), s]);
                        (cache, same)
                    }
                    None => match &self.prefix {
                        Some(p) if s.starts_with(p.tokens()) => (p.cache().clone(), p.len()),
                        _ => (KvCache::default(), 0),
                    },
                };
                // At least the last token runs (its logits are the score).
                let keep = keep.min(s.len() - 1).min(cache.len());
                fw.truncate_cache(&mut cache, keep);
                kv.push(cache);
                tails.push(&s[keep..]);
            }
            let o = fw.run_cached(&tails, &mut kv, &req)?;
            out.extend(self.read_values(&o, chunk.len()));
            for ((s, c), cache) in chunk.iter().zip(cs.iter_mut()).zip(kv) {
                *c = Some((s.to_vec(), cache));
            }
        }
        Ok(out)
    }

    fn read_values(&self, o: &hd_lm::forward::Output, n: usize) -> Vec<(f64, f64)> {
        let v = self.model.config.vocab_size;
        let d = self.model.config.hidden_size;
        let logits = o.logits.as_deref().unwrap_or(&[]);
        (0..n)
            .map(|i| {
                let score = self
                    .refusal
                    .score(&log_softmax(&logits[i * v..(i + 1) * v]));
                let value = match &self.target {
                    PruneTarget::Refusal => score,
                    PruneTarget::Component { direction, .. } => {
                        project(&o.captured[0].1[i * d..(i + 1) * d], direction)
                    }
                };
                (score, value)
            })
            .collect()
    }

    /// Prunes every prompt with one method (`repeat` numbers the random control's runs),
    /// from its [`Start`]. All prompts move in lockstep, one step per batched pass; `done`
    /// gets the number of prompts finished so far.
    pub fn prune(
        &self,
        method: Method,
        repeat: usize,
        prompts: &[Prompt],
        starts: &[Start],
        mut done: impl FnMut(usize),
    ) -> Result<Vec<Outcome>> {
        if prompts.len() != starts.len() {
            return Err(AnalysisError::Input(format!(
                "{} prompts but {} starts",
                prompts.len(),
                starts.len()
            )));
        }
        let mut live: Vec<Live> = prompts
            .iter()
            .zip(starts)
            .map(|(p, s)| Live::new(p.text, s, self.settings.cap(s.enc.user.len())))
            .collect();
        // A deletion keeps the tokens before it, so each scoring continues the prompt's cache
        // from its previous one and runs only from the deletion on.
        let mut caches: Caches = starts
            .iter()
            .map(|s| s.cache.as_ref().map(|c| (s.enc.ids.clone(), c.clone())))
            .collect();
        for round in 0.. {
            let active: Vec<usize> = (0..live.len()).filter(|&i| !live[i].done).collect();
            if active.is_empty() {
                break;
            }
            if round > 0 {
                self.rescore(&mut live, &active, &mut caches)?;
            }
            let mut go = Vec::new();
            for &i in &active {
                let l = &mut live[i];
                if l.score <= 0.0 || l.deleted.len() >= l.cap || l.enc.user.is_empty() {
                    l.done = true;
                    caches[i] = None;
                } else {
                    go.push(i);
                }
            }
            done(live.iter().filter(|l| l.done).count());
            if go.is_empty() {
                break;
            }
            let ranks = {
                let steps: Vec<Step> = go
                    .iter()
                    .map(|&i| Step {
                        id: prompts[i].id,
                        enc: &live[i].enc,
                        value: live[i].value,
                        cache: caches[i].as_ref().map(|(_, c)| c),
                    })
                    .collect();
                self.method_scores(method, repeat, round, &steps)?
            };
            for (&i, r) in go.iter().zip(ranks) {
                self.delete(&mut live[i], &r)?;
            }
        }
        Ok(live
            .into_iter()
            .map(|l| Outcome {
                text: l.text,
                deleted: l.deleted,
                n_user: l.n_user,
                score: l.score,
                steps: l.steps,
            })
            .collect())
    }

    /// Scores the `active` prompts' current texts (each continuing its cache, sharing on).
    fn rescore(&self, live: &mut [Live], active: &[usize], caches: &mut Caches) -> Result<()> {
        let vals = {
            let seqs: Vec<&[u32]> = active.iter().map(|&i| live[i].enc.ids.as_slice()).collect();
            match self.settings.share_prefix {
                true => {
                    let mut mine: Caches = active.iter().map(|&i| caches[i].take()).collect();
                    let v = self.values_cached(&seqs, &mut mine)?;
                    for (&i, c) in active.iter().zip(mine) {
                        caches[i] = c;
                    }
                    v
                }
                false => self.values(&seqs)?,
            }
        };
        for (&i, (score, value)) in active.iter().zip(vals) {
            live[i].score = score;
            live[i].value = value;
        }
        Ok(())
    }

    /// Per prompt, per user position: the score `method` ranks the tokens by at step `round`
    /// (the highest is deleted first).
    fn method_scores(
        &self,
        method: Method,
        repeat: usize,
        round: usize,
        steps: &[Step],
    ) -> Result<Vec<Vec<f64>>> {
        let encs: Vec<&Encoded> = steps.iter().map(|s| s.enc).collect();
        Ok(match method {
            Method::Random => steps
                .iter()
                .map(|s| random_scores(&self.settings, s.id, repeat, round, s.enc))
                .collect(),
            Method::Attribution => self.traced_scores(&encs, self.settings.rules, false)?,
            Method::GradNorm => self.traced_scores(&encs, Rules::Exact, true)?,
            Method::Occlusion => self.occlusion_scores(steps)?,
        })
    }

    /// The first step's scores of every user token of each prompt under `method` (what
    /// the first deletion is chosen by): to compare how the methods rank the same tokens.
    pub fn first_scores(
        &self,
        method: Method,
        prompts: &[Prompt],
        starts: &[Start],
    ) -> Result<Vec<Vec<f64>>> {
        let steps: Vec<Step> = prompts
            .iter()
            .zip(starts)
            .map(|(p, s)| Step {
                id: p.id,
                enc: &s.enc,
                value: s.value,
                cache: s.cache.as_ref(),
            })
            .collect();
        self.method_scores(method, 1, 0, &steps)
    }

    /// Deletes the highest-scoring user tokens (ties: the earlier one) and re-encodes the
    /// text the kept tokens decode to.
    fn delete(&self, l: &mut Live, scores: &[f64]) -> Result<()> {
        let k = self
            .settings
            .step
            .min(l.cap - l.deleted.len())
            .min(scores.len());
        let order = top_k(scores, k);
        let tok = &self.model.tokenizer;
        let user = &l.enc.ids[l.enc.user.clone()];
        for &j in &order {
            l.deleted.push(tok.decode(&[user[j]], false)?);
        }
        let kept: Vec<u32> = user
            .iter()
            .enumerate()
            .filter(|(j, _)| !order.contains(j))
            .map(|(_, &t)| t)
            .collect();
        l.text = tok.decode(&kept, false)?;
        l.enc = self.encode(&l.text)?;
        l.steps += 1;
        Ok(())
    }

    /// Per prompt, per user position: the AttnLRP relevance to the target (`norm` false), or
    /// the plain gradient's norm (`norm` true).
    fn traced_scores(&self, encs: &[&Encoded], rules: Rules, norm: bool) -> Result<Vec<Vec<f64>>> {
        let d = self.model.config.hidden_size;
        let mut out = Vec::with_capacity(encs.len());
        for chunk in encs.chunks(self.settings.batch) {
            let seqs: Vec<&[u32]> = chunk.iter().map(|e| e.ids.as_slice()).collect();
            let (capture, logits) = match &self.target {
                PruneTarget::Refusal => (vec![], true),
                PruneTarget::Component { layer, .. } => (vec![*layer], false),
            };
            // Only user positions are scored: the template before them is run once.
            let shared = match self.settings.share_prefix {
                true => chunk.iter().map(|e| e.user.start).min().unwrap_or(0),
                false => 0,
            };
            let t = Traced::run_shared(self.diff, &seqs, 0, &capture, logits, rules, shared)?;
            let target = match &self.target {
                PruneTarget::Refusal => Target::LogOdds {
                    ids: &self.refusal.ids,
                },
                PruneTarget::Component { layer, direction } => Target::Projection {
                    layer: *layer,
                    direction,
                },
            };
            let per_row: Vec<f64> = if norm {
                let g = t.input_grad(&target)?;
                g.chunks(d)
                    .map(|r| r.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt())
                    .collect()
            } else {
                t.relevance(&target)?.into_iter().map(f64::from).collect()
            };
            // The engine seeds a projection with 1/(c·h) (relevances sum to about one, as in
            // the paper's maps); times c·h, a token's relevance is its share of c·h itself,
            // so positive means "raises the projection" whatever the sign of c·h.
            let scale: Vec<f64> = match (&self.target, norm) {
                (PruneTarget::Component { .. }, false) => {
                    t.values(&target)?.into_iter().map(f64::from).collect()
                }
                _ => vec![1.0; chunk.len()],
            };
            for (q, e) in chunk.iter().enumerate() {
                out.push(
                    e.user
                        .clone()
                        .map(|p| per_row[t.row(q, p)] * scale[q])
                        .collect(),
                );
            }
        }
        Ok(out)
    }

    /// Per prompt, per user position: how much the target drops when that token alone is
    /// removed (token ids, not re-tokenised text: the exact effect of each token). With the
    /// prompts' caches, each variant continues its prompt's cache up to the deleted token
    /// (so only the tokens after it run: about n²/2 rows for n user tokens), variants of
    /// many prompts packed into each pass; without, every variant runs in full.
    fn occlusion_scores(&self, steps: &[Step]) -> Result<Vec<Vec<f64>>> {
        fn cached<'a>(s: &Step<'a>) -> Option<&'a KvCache> {
            s.cache.filter(|c| c.len() == s.enc.ids.len())
        }
        let branch = self.settings.share_prefix && steps.iter().all(|s| cached(s).is_some());
        // A one-token prompt has no variant to run: its token scores NaN (never preferred).
        let mut out: Vec<Vec<f64>> = steps
            .iter()
            .map(|s| match s.enc.ids.len() {
                1 => vec![f64::NAN; s.enc.user.len()],
                _ => Vec::with_capacity(s.enc.user.len()),
            })
            .collect();
        let jobs: Vec<(usize, usize)> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.enc.ids.len() > 1)
            .flat_map(|(q, s)| s.enc.user.clone().map(move |p| (q, p)))
            .collect();
        let fw = self.model.forward();
        let req = self.request();
        let mut at = 0;
        while at < jobs.len() {
            let (mut end, mut rows) = (at, 0);
            while end < jobs.len() && (end == at || rows < OCCLUSION_ROWS) {
                let (q, p) = jobs[end];
                rows += steps[q].enc.ids.len() - p;
                end += 1;
            }
            let chunk = &jobs[at..end];
            let variants: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&(q, p)| {
                    let ids = &steps[q].enc.ids;
                    [&ids[..p], &ids[p + 1..]].concat()
                })
                .collect();
            let vals = if branch {
                // Continue the prompt's cache up to the deleted token, keeping at least the
                // variant's last token to run.
                let keep: Vec<usize> = chunk
                    .iter()
                    .zip(&variants)
                    .map(|(&(_, p), v)| p.min(v.len() - 1))
                    .collect();
                let tails: Vec<&[u32]> =
                    variants.iter().zip(&keep).map(|(v, &k)| &v[k..]).collect();
                let past: Vec<(&KvCache, usize)> = chunk
                    .iter()
                    .zip(&keep)
                    .map(|(&(q, _), &k)| (cached(&steps[q]).expect("checked"), k))
                    .collect();
                let o = fw.run_branches(&tails, &past, &req, &mut NoHook)?;
                self.read_values(&o, tails.len())
            } else {
                let seqs: Vec<&[u32]> = variants.iter().map(Vec::as_slice).collect();
                self.values(&seqs)?
            };
            for (&(q, _), (_, v)) in chunk.iter().zip(vals) {
                out[q].push(steps[q].value - v);
            }
            at = end;
        }
        Ok(out)
    }

    /// Greedy answers (`max_new` tokens, special tokens dropped) of user texts, in batches
    /// sharing the template's head.
    pub fn answers(
        &self,
        texts: &[&str],
        max_new: usize,
        mut done: impl FnMut(usize),
    ) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            let seqs = chunk
                .iter()
                .map(|t| self.model.encode_prompt(t, &self.settings.format))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let share = self.settings.share_prefix;
            for g in self.model.generate_with(&seqs, max_new, &[], share)? {
                out.push(self.model.tokenizer.decode(&g.tokens, true)?);
            }
            done(out.len());
        }
        Ok(out)
    }
}

/// New rows per leave-one-out pass (variants of several prompts): large enough for
/// efficient GEMMs, small enough to keep the pass's buffers to a few tens of MB.
const OCCLUSION_ROWS: usize = 2048;

/// The template's tokens before the user text (what every prompt starts with).
fn template_head(model: &Model, fmt: &PromptFormat) -> Result<Vec<u32>> {
    let a = encode_with_user_span(model, "a", fmt)?;
    let b = encode_with_user_span(model, "b", fmt)?;
    let n = a.user.start.min(b.user.start);
    let shared = a.ids[..n]
        .iter()
        .zip(&b.ids[..n])
        .take_while(|(x, y)| x == y)
        .count();
    Ok(a.ids[..shared].to_vec())
}

/// Random scores of the user positions, a stream of its own per (seed, repeat, prompt, step).
fn random_scores(s: &Settings, id: &str, repeat: usize, round: usize, e: &Encoded) -> Vec<f64> {
    let mut rng = SplitMix64::derive(&[s.seed, repeat as u64, hash_str(id), round as u64]);
    e.user.clone().map(|_| rng.next_f64()).collect()
}

/// Indices of the `k` largest scores, largest first; ties and NaN go to the earlier index.
pub fn top_k(scores: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let key = |i: usize| {
        if scores[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    idx.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Counts of deleted token strings (trimmed, as a reader names them), most frequent first
/// (ties by text); empty strings (whitespace tokens) are counted as `␣`.
pub fn token_counts<'a>(deleted: impl IntoIterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: HashMap<String, usize> = HashMap::new();
    for t in deleted {
        let t = t.trim();
        let t = if t.is_empty() { "␣" } else { t };
        *m.entry(t.to_string()).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_takes_the_largest_first_and_breaks_ties_by_position() {
        assert_eq!(top_k(&[0.1, 0.5, 0.5, -1.0], 2), [1, 2]);
        assert_eq!(top_k(&[f64::NAN, -3.0], 1), [1]);
        assert_eq!(top_k(&[1.0], 3), [0]);
    }

    #[test]
    fn cap_is_the_budget_share_at_least_one_at_most_the_cap() {
        let s = Settings {
            budget: 0.25,
            max_tokens: 8,
            step: 1,
            seed: 0,
            format: PromptFormat::default(),
            batch: 1,
            share_prefix: true,
            rules: Rules::AttnLrp,
        };
        assert_eq!(s.cap(3), 1);
        assert_eq!(s.cap(12), 3);
        assert_eq!(s.cap(100), 8);
        assert_eq!(s.cap(0), 0);
    }

    #[test]
    fn counts_trim_and_rank() {
        let c = token_counts([" Sure", "Sure", " here", " "]);
        assert_eq!(c[0], ("Sure".to_string(), 2));
        assert_eq!(c.len(), 3);
        assert!(c.iter().any(|(t, n)| t == "␣" && *n == 1));
    }

    #[test]
    fn log_softmax_normalises() {
        let l = log_softmax(&[1.0, 2.0, 3.0]);
        let s: f64 = l.iter().map(|&x| (x as f64).exp()).sum();
        assert!((s - 1.0).abs() < 1e-6);
    }
}
