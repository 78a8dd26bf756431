//! Exit-code mapping, the shared argument groups, and progress bars.

use std::io;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use hd_cli::{exit_code, is_broken_pipe, main_with_args, Device, DeviceArgs, LayerArgs, LogArgs};

#[derive(Debug, Parser)]
#[command(name = "demo", version = "1.2.3")]
struct Args {
    /// An input.
    input: Option<String>,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    layers: LayerArgs,
}

fn run(argv: &[&str], f: impl FnOnce(Args) -> anyhow::Result<()>) -> ExitCode {
    main_with_args(
        "demo",
        std::iter::once("demo").chain(argv.iter().copied()),
        f,
    )
}

#[test]
fn exit_codes_from_main_with() {
    assert_eq!(run(&[], |_| Ok(())), ExitCode::from(0));
    assert_eq!(run(&[], |_| anyhow::bail!("bad data")), ExitCode::from(1));
    assert_eq!(run(&["--no-such-flag"], |_| Ok(())), ExitCode::from(2));
    assert_eq!(run(&["--layers", "0-x"], |_| Ok(())), ExitCode::from(2));
    assert_eq!(run(&["--device", "tpu"], |_| Ok(())), ExitCode::from(2));
    assert_eq!(run(&["--threads", "0"], |_| Ok(())), ExitCode::from(2));
    assert_eq!(run(&["-q", "-v"], |_| Ok(())), ExitCode::from(2));
    assert_eq!(run(&["--help"], |_| Ok(())), ExitCode::from(0));
    assert_eq!(run(&["--version"], |_| Ok(())), ExitCode::from(0));
    let pipe = || Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing rows");
    assert_eq!(run(&[], |_| pipe()), ExitCode::from(0));
}

#[test]
fn broken_pipe_anywhere_in_the_chain_is_success() {
    let plain = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
    assert!(is_broken_pipe(&plain));
    assert_eq!(exit_code(&plain), 0);

    let wrapped = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe))
        .context("writing out.csv")
        .context("dumping activations");
    assert_eq!(exit_code(&wrapped), 0);

    // An hd-formats error keeps its io::Error out of source(); it is still recognised.
    let formats_err = hd_formats::atomic::write_atomic(std::path::Path::new("-"), |_| {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    })
    .unwrap_err();
    let e = anyhow::Error::from(formats_err).context("writing");
    assert_eq!(exit_code(&e), 0);

    let other = anyhow::Error::from(io::Error::from(io::ErrorKind::NotFound)).context("x");
    assert!(!is_broken_pipe(&other));
    assert_eq!(exit_code(&other), 1);
    assert_eq!(exit_code(&anyhow::anyhow!("numerical failure")), 1);
}

#[test]
fn error_line_is_one_line_with_the_chain() {
    let e = anyhow::anyhow!("p.csv: line 3: empty id").context("reading prompts");
    assert_eq!(
        hd_cli::error_line("act-dump", &e),
        "act-dump: reading prompts: p.csv: line 3: empty id"
    );
    let e = anyhow::anyhow!("two\nlines");
    assert_eq!(hd_cli::error_line("t", &e), "t: two lines");
}

/// The libraries say what is wrong; the line a tool prints names the shared flag that fixes
/// it, however the error reached the tool (typed, with context, or as another library's text).
#[test]
fn library_errors_are_named_by_their_flag() {
    let no_template = || hd_lm::LmError::NoChatTemplate {
        path: "m.gguf".into(),
    };
    let want = "t: m.gguf: the model has no chat template; pass --no-template to use raw text";
    assert_eq!(hd_cli::error_line("t", &no_template().into()), want);
    let wrapped = anyhow::Error::from(no_template()).context("p.csv: row with id 'a'");
    assert!(hd_cli::error_line("t", &wrapped).ends_with("--no-template to use raw text"));
    let as_text = anyhow::anyhow!("p.csv: row with id 'a': {}", no_template());
    assert!(hd_cli::error_line("t", &as_text).ends_with("--no-template to use raw text"));
    assert_eq!(
        hd_cli::error_line("t", &anyhow::anyhow!("no template here")),
        "t: no template here"
    );

    let table =
        hd_formats::prompts::PromptTable::from_bytes("p.csv", b"id,prompt,category\na,x,raw\n")
            .unwrap();
    let e = table
        .rows_by_category(Some(&["nosuch".to_string()]), None)
        .map_err(hd_cli::categories_error)
        .unwrap_err();
    assert_eq!(
        hd_cli::error_line("t", &e),
        "t: --categories: p.csv: column 'category' has no row 'nosuch'"
    );
    // no category column: not about --categories
    let plain = hd_formats::prompts::PromptTable::from_bytes("p.csv", b"id,prompt\na,x\n").unwrap();
    let e = plain
        .rows_by_category(None, Some(1))
        .map_err(hd_cli::categories_error)
        .unwrap_err();
    assert!(!hd_cli::error_line("t", &e).contains("--categories"));
}

#[test]
fn shared_groups_parse() {
    let a = Args::try_parse_from([
        "demo",
        "in.csv",
        "-vv",
        "--device",
        "cuda:1",
        "--threads",
        "3",
        "--layers",
        "0-2,-1",
    ])
    .unwrap();
    assert_eq!(a.input.as_deref(), Some("in.csv"));
    assert_eq!(a.log.verbose, 2);
    assert!(!a.log.quiet);
    assert_eq!(a.device.device, Device::Cuda(1));
    assert_eq!(a.device.threads, Some(3));
    assert_eq!(a.layers.layers.resolve(10).unwrap(), vec![0, 1, 2, 10]);

    let d = Args::try_parse_from(["demo"]).unwrap();
    assert_eq!(d.device.device, Device::Cpu);
    assert_eq!(d.device.threads, None);
    assert_eq!(d.layers.layers.resolve(2).unwrap(), vec![0, 1, 2]);
    assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));

    let e = Args::try_parse_from(["demo", "--layers", "0-x"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("bad item '0-x'"), "{e}");
}

/// A tool with its own about text keeps it; one without gets none from the groups.
#[test]
fn groups_do_not_leak_about_text() {
    use clap::CommandFactory;
    /// Dump activations.
    #[derive(Parser)]
    struct Documented {
        #[command(flatten)]
        log: LogArgs,
        #[command(flatten)]
        layers: LayerArgs,
    }
    let c = Documented::command();
    assert_eq!(
        c.get_about().map(|s| s.to_string()).as_deref(),
        Some("Dump activations")
    );
    let c = Args::command();
    assert_eq!(c.get_about().map(|s| s.to_string()), None);
    let e = Args::try_parse_from(["demo", "--threads", "0"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("invalid value '0' for '--threads <N>': must be at least 1"),
        "{e}"
    );
}

#[test]
fn device_apply() {
    let cpu = DeviceArgs {
        device: Device::Cpu,
        threads: None,
    };
    cpu.apply().unwrap();
    let cuda = DeviceArgs {
        device: Device::Cuda(0),
        threads: None,
    };
    if cfg!(feature = "cuda") {
        cuda.apply().unwrap();
    } else {
        assert_eq!(
            cuda.apply().unwrap_err().to_string(),
            "--device cuda:0: this build has no CUDA support; rebuild with --features cuda"
        );
    }
}

#[test]
fn threads_sets_the_global_pool_once() {
    // This is the only test in this binary that touches rayon's global pool.
    DeviceArgs {
        device: Device::Cpu,
        threads: Some(3),
    }
    .apply()
    .unwrap();
    assert_eq!(rayon::current_num_threads(), 3);
    let e = DeviceArgs {
        device: Device::Cpu,
        threads: Some(2),
    }
    .apply()
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--threads 2: cannot size the thread pool: "),
        "{e}"
    );
}

#[test]
fn progress_is_hidden_off_a_terminal() {
    // Test output is captured, so stderr is not a terminal here.
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        assert!(hd_cli::progress(10, "x").is_hidden());
    }
    hd_cli::init_logging(&LogArgs {
        verbose: 0,
        quiet: true,
    });
    assert!(hd_cli::progress(10, "x").is_hidden());
}

/// Usage errors found after parsing exit 2, like clap's.
#[test]
fn usage_errors_after_parsing_exit_2() {
    assert_eq!(
        run(&[], |_| Err(hd_cli::usage("--lr must be > 0, found 0"))),
        ExitCode::from(2)
    );
    let same = hd_formats::Error::usage("--out x is the same file as --prompts x");
    assert_eq!(
        run(&[], |_| Err(
            anyhow::Error::from(same).context("checking outputs")
        )),
        ExitCode::from(2)
    );
    assert_eq!(exit_code(&anyhow::anyhow!("bad data")), 1);
}

/// `--layers -3`, the form --help documents, was rejected by the parser
/// (only `--layers=-3` worked).
#[test]
fn layers_accepts_a_negative_value_as_a_separate_argument() {
    for argv in [
        ["--layers", "-3"],
        ["--layers", "-3,-1"],
        ["--layers", "-5--2"],
    ] {
        let mut got = None;
        let code = run(&argv, |a| {
            got = Some(a.layers.layers);
            Ok(())
        });
        assert_eq!(code, ExitCode::from(0), "{argv:?}");
        assert_eq!(
            got.unwrap().to_string(),
            argv[1]
                .parse::<hd_formats::layers::LayerSpec>()
                .unwrap()
                .to_string()
        );
    }
    // A real flag after it is still a flag.
    assert_eq!(
        run(&["--layers", "-3", "-q"], |_| Ok(())),
        ExitCode::from(0)
    );
}

/// Colour only on a terminal, and never with NO_COLOR set.
#[test]
fn no_colour_off_a_terminal_or_with_no_color() {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        assert!(!hd_cli::use_colour());
    }
    std::env::set_var("NO_COLOR", "1");
    assert!(!hd_cli::use_colour());
    std::env::remove_var("NO_COLOR");
}
