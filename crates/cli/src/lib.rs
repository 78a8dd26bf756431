//! Shared command-line plumbing of the hidden-dims tools: the only crate that knows clap.
//! From another crate: a tool of your own that behaves like ours (exit codes, logs, progress,
//! the shared flags) is [`main_with`] plus the groups below.
//!
//! A tool's `main` is `hd_cli::main_with::<Args>("tool", run)`, where `Args` flattens the
//! shared groups ([`LogArgs`], [`DeviceArgs`], [`LayerArgs`]) and `run` makes one library
//! call.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success, including `--help`/`--version`, and a **broken pipe** (`tool ... \| head` closing its stdin early is not a failure) |
//! | 1 | a data or runtime error: bad input file, I/O failure, numerical failure. One line `tool: message` goes to stderr |
//! | 2 | a usage error: unknown flag, bad flag value (clap prints its own message) |
//!
//! Make stops on any non-zero code, and 2 vs 1 tells "fix the command" from "fix the data".
//!
//! # Streams
//!
//! stdout carries data only; logs (`tracing`) and progress bars go to stderr.

#![deny(missing_docs)]

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::ArgMatches;
use hd_formats::layers::LayerSpec;

/// Parses the arguments, initialises logging, runs the tool and maps the outcome to an exit
/// code (see the module docs).
///
/// Logging is set up from the `-v`/`-q` flags when `A` flattens [`LogArgs`] (read from the
/// parsed matches, so tools need not call [`init_logging`] themselves), else at the default
/// level.
pub fn main_with<A: clap::Parser>(
    tool: &str,
    run: impl FnOnce(A) -> anyhow::Result<()>,
) -> ExitCode {
    main_with_args(tool, std::env::args_os(), run)
}

/// [`main_with`] on an explicit argument list (the first item is the program name); for
/// tests.
pub fn main_with_args<A, I, T>(
    tool: &str,
    args: I,
    run: impl FnOnce(A) -> anyhow::Result<()>,
) -> ExitCode
where
    A: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = match A::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return clap_exit(&e),
    };
    let args = match A::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => return clap_exit(&e.format(&mut A::command())),
    };
    init_logging(&log_args_from(&matches));
    install_signal_cleanup();
    let outcome = run(args);
    // The error line comes first on stderr; warnings held during the run follow it.
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(tool, &err),
    };
    flush_held_warnings();
    code
}

/// clap prints help/version to stdout and errors to stderr itself; its code is 0 for
/// help/version and 2 for usage errors.
fn clap_exit(e: &clap::Error) -> ExitCode {
    // A closed stdout while printing --help is as harmless as any other broken pipe.
    let _ = e.print();
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2))
}

fn log_args_from(m: &ArgMatches) -> LogArgs {
    // `try_get_one` errs when the tool did not flatten LogArgs; that just means defaults.
    let verbose = m
        .try_get_one::<u8>("verbose")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(0);
    let quiet = m
        .try_get_one::<bool>("quiet")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false);
    LogArgs { verbose, quiet }
}

/// Exit code for an error that ended a run: 0 for a broken pipe, 2 for a usage error
/// ([`UsageError`], or an `hd_formats::Error` that [`hd_formats::Error::is_usage`]), else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        0
    } else if is_usage(err) {
        2
    } else {
        1
    }
}

/// A usage error found after argument parsing (a value out of range, flags that clash, an
/// output that is an input): exit code 2, like clap's own. Make with [`usage`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `anyhow::Error` of a [`UsageError`]: `return Err(hd_cli::usage("--lr must be > 0"))`.
pub fn usage(message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.to_string()))
}

/// An optional count that must be at least 1 when given (`--per-category 0` is a usage
/// error rather than an empty selection).
pub fn at_least_one(flag: &str, n: Option<usize>) -> anyhow::Result<Option<usize>> {
    match n {
        Some(0) => Err(usage(format!("{flag} 0: expected at least 1"))),
        n => Ok(n),
    }
}

/// A number of tokens to generate (`flag`, e.g. `--max-new-tokens`) checked against the
/// model's context before any work: it must leave room for a prompt (a usage error
/// otherwise, as generate has always said; a later per-prompt check covers the rest).
pub fn check_new_tokens(flag: &str, n: usize, context: usize) -> anyhow::Result<()> {
    if n >= context {
        return Err(usage(format!(
            "{flag} {n} leaves no room for a prompt in the model's context of {context}"
        )));
    }
    Ok(())
}

/// True when any error in the chain is a usage error.
pub fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<UsageError>()
            || e.downcast_ref::<hd_formats::Error>()
                .is_some_and(hd_formats::Error::is_usage)
    })
}

// ---------------------------------------------------------------------------------------
// Signals.

static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: hand the signal number to the cleanup thread.
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    let b = sig as u8;
    // SAFETY: write(2) on a pipe is async-signal-safe; the buffer is one live byte.
    unsafe {
        libc::write(fd, (&b as *const u8).cast(), 1);
    }
}

/// On SIGINT, SIGTERM or SIGHUP: remove every temporary output registered with
/// `hd_formats::atomic` (staged files, staging folders), then die of the same signal, so the
/// shell and make see an interrupted run and no hidden half-output stays behind. (`kill -9`
/// cannot be caught; its leftovers are hidden `.name.*.tmp` files that match no make target.)
///
/// The handler only writes the signal number to a pipe; a thread does the removal, where
/// taking locks and touching the filesystem is safe. Installed once per process.
pub fn install_signal_cleanup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe(2) fills the two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return;
        }
        SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("signal-cleanup".into())
            .spawn(move || {
                let mut b = 0u8;
                loop {
                    // SAFETY: reads one byte into a live local.
                    let n = unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
                    if n == 1 {
                        break;
                    }
                    if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return;
                }
                hd_formats::atomic::remove_temps();
                let sig = libc::c_int::from(b);
                // SAFETY: restoring the default action and re-raising ends the process
                // the way the signal would have without a handler.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
            });
        if spawned.is_err() {
            return;
        }
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: a plain C handler that only calls write(2).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

/// Prints `{tool}: {err:#}` on one line to stderr (unless it is a broken pipe) and returns
/// the exit code from [`exit_code`].
pub fn report(tool: &str, err: &anyhow::Error) -> ExitCode {
    let code = exit_code(err);
    if code != 0 {
        eprintln!("{}", error_line(tool, err));
    }
    ExitCode::from(code)
}

/// The message [`report`] prints: `tool: outer context: ... : root cause`, newlines inside
/// any message flattened so the report stays one line.
pub fn error_line(tool: &str, err: &anyhow::Error) -> String {
    let msg = format!("{err:#}{}", flag_hint(err));
    let msg: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("{tool}: {}", msg.join(" "))
}

/// What a library error that one of the shared flags fixes asks of the user, by that flag
/// (the libraries say what is wrong, not which flag a tool gives them). By the message's end,
/// since other libraries wrap hd-lm's errors (some as text).
fn flag_hint(err: &anyhow::Error) -> &'static str {
    if err
        .root_cause()
        .to_string()
        .ends_with(hd_lm::NO_CHAT_TEMPLATE)
    {
        "; pass --no-template to use raw text"
    } else {
        ""
    }
}

/// A row-selection error of `PromptTable::rows_by_category`, naming `--categories` when it
/// is about a category asked for that no row has.
pub fn categories_error(e: hd_formats::Error) -> anyhow::Error {
    match e {
        e @ hd_formats::Error::NoRowWith { .. } => anyhow::Error::new(e).context("--categories"),
        e => e.into(),
    }
}

/// True when any error in the chain is an I/O `BrokenPipe`, whether a plain `io::Error` or
/// one inside an `hd_formats::Error` (which keeps its I/O cause out of `source()`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>().map(io::Error::kind) == Some(io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<hd_formats::Error>()
                .and_then(hd_formats::Error::io_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

// ---------------------------------------------------------------------------------------
// Logging.

/// `-v`/`-q`: how much goes to stderr.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc comment above would otherwise become the about text of a tool that has none.
#[command(about = None, long_about = None)]
pub struct LogArgs {
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors on stderr; no progress bars.
    #[arg(short = 'q', long = "quiet", global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

static QUIET: AtomicBool = AtomicBool::new(false);

/// Installs a `tracing` subscriber writing to stderr: level info by default, warn with
/// `-q`, debug with `-v`, trace with `-vv`. Without either flag, a `RUST_LOG` filter in the
/// environment takes precedence. Calling it again is harmless (the first subscriber stays).
pub fn init_logging(args: &LogArgs) {
    use tracing_subscriber::EnvFilter;
    QUIET.store(args.quiet, Ordering::Relaxed);
    let level = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if args.verbose == 0 && !args.quiet && !s.is_empty() => {
            EnvFilter::try_new(s).unwrap_or_else(|_| EnvFilter::new(level))
        }
        _ => EnvFilter::new(level),
    };
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    let writer = HeldWarnings
        .with_max_level(tracing::Level::WARN)
        .or_else(io::stderr);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(use_colour())
        .with_target(false)
        .try_init();
}

/// Colour on stderr only when it is a terminal and `NO_COLOR` (no-color.org) is unset or
/// empty: escape codes in a log file or a CI transcript are noise.
pub fn use_colour() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

// Warnings and errors logged during a run are held and printed after it, so that when the
// run fails its one-line error is the first thing on stderr (a warning such as "--k is
// clamped" printed first reads as the cause). Info and debug lines stream as they come.
static HELD: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct HeldWarnings;

struct HeldWriter;

impl io::Write for HeldWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for HeldWarnings {
    type Writer = HeldWriter;
    fn make_writer(&'a self) -> HeldWriter {
        HeldWriter
    }
}

/// Writes the warnings held since the last call to stderr (see [`main_with`]).
pub fn flush_held_warnings() {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|e| e.into_inner()));
    if !held.is_empty() {
        let _ = io::Write::write_all(&mut io::stderr(), &held);
    }
}

/// A progress bar on stderr for `len` steps of `what`.
///
/// It is hidden (all calls become no-ops) when stderr is not a terminal, so logs and
/// make output stay clean, and when `-q` was given (as recorded by [`init_logging`]).
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    if QUIET.load(Ordering::Relaxed) || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {human_pos}/{human_len} {elapsed_precise} (eta {eta})",
    )
    .expect("valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

// ---------------------------------------------------------------------------------------
// Traced passes.

/// Prompts per traced (attribution) pass: `given` (`--batch-size`) as it is; else as many
/// prompts of `seqs` through `blocks` blocks as the memory available holds beside the
/// weights, at most `default` ([`hd_grad::memory::traced_batch_for`]), logged when memory
/// made it fewer.
#[cfg(feature = "traced")]
pub fn traced_batch(
    given: Option<usize>,
    model: &hd_lm::Model,
    seqs: &[Vec<u32>],
    blocks: usize,
    default: usize,
) -> usize {
    if let Some(batch) = given {
        return batch;
    }
    let tb = hd_grad::memory::traced_batch_for(model, seqs, blocks, default);
    if tb.reduced {
        tracing::info!(
            "{} prompts per traced pass (not {default}): more would not fit in the memory \
             available (--batch-size to choose)",
            tb.batch
        );
    }
    tb.batch
}

// ---------------------------------------------------------------------------------------
// Device.

/// Where the numbers are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU (rayon threads).
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl FromStr for Device {
    type Err = String;

    /// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("invalid device '{s}' (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// `--device`, `--threads`.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc comment above would otherwise become the about text of a tool that has none.
#[command(about = None, long_about = None)]
pub struct DeviceArgs {
    /// Compute device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: Device,
    /// Worker threads for CPU work (default: one per core).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

impl DeviceArgs {
    /// Sets the rayon global pool size when `--threads` was given, and refuses CUDA unless
    /// this crate was built with its `cuda` feature (tools forward theirs to it).
    pub fn apply(&self) -> anyhow::Result<()> {
        if let Device::Cuda(_) = self.device {
            if !cfg!(feature = "cuda") {
                anyhow::bail!(
                    "--device {}: this build has no CUDA support; rebuild with --features cuda",
                    self.device
                );
            }
        }
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| anyhow::anyhow!("--threads {n}: cannot size the thread pool: {e}"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Chat formatting.

/// `--per-category N`, declared once for every tool that takes the first rows of each
/// category of a prompt CSV.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(about = None, long_about = None)]
pub struct PerCategoryArgs {
    /// Only the first N rows of each category (in file order, after any category filter).
    #[arg(long, value_name = "N")]
    pub per_category: Option<usize>,
}

impl PerCategoryArgs {
    /// The count; 0 is a usage error rather than an empty selection.
    pub fn get(&self) -> anyhow::Result<Option<usize>> {
        at_least_one("--per-category", self.per_category)
    }
}

/// How prompts become model input, for the tools that run a chat model.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(about = None, long_about = None)]
pub struct ChatArgs {
    /// System message for the chat template.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Encode the raw prompt text, without the chat template.
    #[arg(long, conflicts_with = "system")]
    pub no_template: bool,
    /// Write each prompt into a template first, whose output becomes the user turn: `guard`
    /// (the built-in moderation prompt: the unsafe-content categories, the conversation,
    /// "provide your safety assessment") or a Jinja file placing {{ prompt }}.
    #[arg(long, value_name = "guard|FILE")]
    pub template: Option<String>,
    /// Compute every token of every prompt instead of running the prompts' common prefix
    /// (the template's system turn) once and reusing its keys and values. Sharing is exact up
    /// to floating-point summation order; turn it off for numerics that do not depend on which
    /// other prompts share the prefix.
    #[arg(long)]
    pub no_share_prefix: bool,
    /// Qwen3's thinking switch (the template's `enable_thinking`): `off` (the default) asks
    /// for the answer straight away, as refusal studies read it; `on` lets the model think
    /// first; `template` leaves it to the template (Qwen3's thinks). Other templates ignore it.
    #[arg(long, value_enum, default_value_t = Thinking::Off, conflicts_with = "no_template")]
    pub thinking: Thinking,
}

/// `--thinking`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Thinking {
    /// `enable_thinking = false`.
    #[default]
    Off,
    /// `enable_thinking = true`.
    On,
    /// Undefined, as transformers' `apply_chat_template` leaves it by default.
    Template,
}

impl Thinking {
    /// The template variable's value (`None`: undefined).
    pub fn enable_thinking(self) -> Option<bool> {
        match self {
            Thinking::Off => Some(false),
            Thinking::On => Some(true),
            Thinking::Template => None,
        }
    }
}

impl ChatArgs {
    /// The prompt format these flags describe; an unreadable or invalid `--template` file is
    /// an error naming it.
    pub fn format(&self) -> anyhow::Result<hd_lm::PromptFormat> {
        let user_template = match &self.template {
            Some(spec) => Some(hd_lm::UserTemplate::from_spec(spec)?),
            None => None,
        };
        Ok(hd_lm::PromptFormat {
            system: self.system.clone(),
            no_template: self.no_template,
            enable_thinking: self.thinking.enable_thinking(),
            user_template,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Layers.

/// `--layers`.
#[derive(Debug, Clone, clap::Args)]
// The doc comment above would otherwise become the about text of a tool that has none.
#[command(about = None, long_about = None)]
pub struct LayerArgs {
    /// Layers (hidden-state indices): all, last, N, -N (from the end), A-B, comma-separated.
    // allow_hyphen_values: `--layers -3` (as documented) rather than only `--layers=-3`.
    #[arg(
        long,
        default_value = "all",
        value_name = "SPEC",
        allow_hyphen_values = true,
        value_parser = LayerSpec::from_str
    )]
    pub layers: LayerSpec,
}

impl Default for LayerArgs {
    fn default() -> Self {
        LayerArgs {
            layers: LayerSpec::all(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Compute mode.

/// `--rules` of the attribution tools (dir-label tokens, dir-interact relevance, token-prune):
/// attnlrp, the linearised AttnLRP rules (the paper's); grad-x-input, the exact gradient
/// (for what lxt defines no AttnLRP rules for: Gemma 2's soft-capping).
#[cfg(feature = "traced")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesArg {
    /// The linearised AttnLRP rules.
    #[default]
    Attnlrp,
    /// The exact gradient × input.
    GradXInput,
}

#[cfg(feature = "traced")]
impl From<RulesArg> for hd_grad::Rules {
    fn from(r: RulesArg) -> Self {
        match r {
            RulesArg::Attnlrp => hd_grad::Rules::AttnLrp,
            RulesArg::GradXInput => hd_grad::Rules::Exact,
        }
    }
}

/// How products with stored (quantised) weights run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ComputeMode {
    /// Dequantised f32 tiles: the results of the model expanded to f32.
    #[default]
    Exact,
    /// Int8-quantised activations against the weight blocks, llama.cpp's kernels: faster,
    /// results differ from exact by the activations' rounding.
    Fast,
}

impl From<ComputeMode> for hd_lm::Compute {
    fn from(m: ComputeMode) -> Self {
        match m {
            ComputeMode::Exact => hd_lm::Compute::Exact,
            ComputeMode::Fast => hd_lm::Compute::Fast,
        }
    }
}

/// `--compute`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(about = None, long_about = None)]
pub struct ComputeArgs {
    /// exact: quantised weights dequantised in tiles, the f32 results; fast: int8 activations
    /// against the weight blocks (forward passes only; gradients stay exact).
    #[arg(long, value_enum, default_value_t = ComputeMode::Exact, value_name = "MODE")]
    pub compute: ComputeMode,
}
