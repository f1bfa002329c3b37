//! The `render` subcommand as ops run it: the built binary, a file, its exit code and streams.
//! No cluster: `render` is offline.

use std::process::Command;

fn render(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hexagone-operator"))
        .arg("render")
        .args(args)
        .output()
        .expect("the built binary runs")
}

#[test]
fn render_prints_the_sample_and_exits_2_naming_what_is_unknown() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/workplace.yaml"
    );
    let ok = render(&["-f", sample, "--zone", "fr-par-1", "--zone", "fr-par-2"]);
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(stdout.contains("kind: StorageClass\n"), "{stdout}");
    assert!(stdout.contains("name: postgresql-databases\n"), "{stdout}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("workplace.yaml");
    let text = std::fs::read_to_string(sample)
        .unwrap()
        .replace("    jitsi-jvb:\n", "    nextcloud:\n");
    std::fs::write(&bad, text).unwrap();
    let refused = render(&["-f", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(
        stderr.contains("spec.components.nextcloud: no such component in the catalog"),
        "{stderr}"
    );
}

/// `render … | head`: a reader that stops early ends the program quietly, status 141 as for
/// SIGPIPE, no panic message.
#[test]
fn a_closed_output_pipe_ends_render_quietly() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../manifests/samples/workplace.yaml"
    );
    hexagone_testbed::assert_quiet_on_a_closed_pipe(
        Command::new(env!("CARGO_BIN_EXE_hexagone-operator")).args(["render", "-f", sample]),
    );
}
