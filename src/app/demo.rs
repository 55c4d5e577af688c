//! `framering demo`: one producer and N consumers on the config's input,
//! run as child processes of the binaries beside this one.

use super::cli::load_config;
use super::exit;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The program `bin` beside the running one (the binaries are built and
/// installed together).
fn sibling(bin: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name(bin);
    anyhow::ensure!(
        p.exists(),
        "{} not found next to {}: build all binaries with `cargo build --release`",
        bin,
        me.display()
    );
    Ok(p)
}

/// Runs the demo: `consumers` consumer processes, consumer i writing to
/// `output/consumer-i`, and a producer replaying the config's input `loops`
/// times. The config is read here, once (the children get the same file,
/// or none when there is none). The exit code: 1 if a process failed.
pub fn run(
    config: Option<PathBuf>,
    consumers: u32,
    loops: u32,
    output: PathBuf,
) -> anyhow::Result<i32> {
    let producer = sibling("framering-producer")?;
    let consumer = sibling("framering-consumer")?;
    // Read the config here, once, so that a bad one is one error (not one
    // per child); the children get the same file, or none (built-in
    // defaults) when there is none here.
    let explicit = config.is_some();
    let path = config.unwrap_or_else(|| PathBuf::from("config.toml"));
    let cfg = load_config(&path, explicit)?;
    let config_args: Vec<String> = if explicit || path.exists() {
        vec!["--config".into(), path.to_string_lossy().into_owned()]
    } else {
        vec![]
    };
    // The sample images: the configured input, or, when run outside the
    // repository with the default input, the repository's own assets/.
    let mut input = PathBuf::from(&cfg.producer.input);
    let repo_assets = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    if cfg.producer.input == "assets" && !input.exists() && repo_assets.is_dir() {
        input = repo_assets;
    }
    let path_like = !cfg.producer.input.contains("://")
        && !cfg.producer.input.contains(['*', '?', '[', '%'])
        && cfg.producer.input != "-";
    anyhow::ensure!(
        !path_like || input.exists(),
        "demo input {} not found: run the demo from the repository, or give a config whose producer.input exists",
        input.display()
    );
    let mut children = vec![];
    for i in 0..consumers {
        let out = output.join(format!("consumer-{i}"));
        children.push((
            format!("consumer {i}"),
            Command::new(&consumer)
                .args(&config_args)
                .arg("--output")
                .arg(&out)
                .spawn()?,
        ));
    }
    children.push((
        "producer".to_string(),
        Command::new(&producer)
            .args(&config_args)
            .args(["--loop", &loops.to_string(), "--input"])
            .arg(&input)
            .spawn()?,
    ));
    let mut code = exit::OK;
    for (who, mut child) in children {
        let status = child.wait()?;
        if !status.success() {
            eprintln!("demo: {who} exited with {status}");
            code = exit::FAILURE;
        }
    }
    if code == exit::OK {
        eprintln!("demo: frames written under {}", output.display());
    }
    Ok(code)
}
