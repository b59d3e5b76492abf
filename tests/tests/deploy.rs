//! The deployment files tell the truth about the binaries: every flag in a systemd unit or a
//! Kubernetes manifest is one its binary takes (read from the binary's own `--help`), every
//! `CLOISTER_*` variable is one it reads, every server's port is the one its `--listen` (or
//! `--first-port`) names, and every probe asks `/healthz` (or the TCP port) there.

use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_protocol::access::HEALTH_PATH;
use cloister_tests::stack::bin;
use yaml_rust2::{Yaml, YamlLoader};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/deploy")
}

/// The binary's help text (with its subcommand's, when it has one).
fn help(binary: &str, sub: Option<&str>) -> String {
    let mut c = Command::new(bin(binary));
    c.args(sub).arg("--help");
    let out = c.output().expect("run --help");
    assert!(out.status.success(), "{binary} {sub:?} --help");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The binaries whose first argument is a subcommand.
fn has_subcommands(binary: &str) -> bool {
    matches!(binary, "cloister-issuer" | "cloister-host")
}

/// What is wrong with `args` and `env` for `binary`: flags and variables it does not know.
fn problems(binary: &str, args: &[String], env: &[String]) -> Vec<String> {
    let (sub, flags) = match args.split_first() {
        Some((s, rest)) if has_subcommands(binary) => (Some(s.as_str()), rest),
        _ => (None, args),
    };
    let text = help(binary, sub);
    let mut wrong = Vec::new();
    for a in flags.iter().filter(|a| a.starts_with("--")) {
        let name = a.split('=').next().unwrap_or_default();
        let known = text.lines().any(|l| {
            l.trim_start()
                .split([' ', ','])
                .any(|w| w == name || w.starts_with(&format!("{name}=")))
        });
        if !known {
            wrong.push(format!("{binary} {sub:?}: no flag {name}"));
        }
    }
    for e in env {
        if !text.contains(&format!("[env: {e}=")) && !text.contains(&format!("[env: {e}]")) {
            wrong.push(format!("{binary} {sub:?}: reads no {e}"));
        }
    }
    wrong
}

/// The value of `--name` in `args` (as `--name=V` or `--name V`).
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix(&format!("{name}=")).or_else(|| {
            (a == name)
                .then(|| args.get(i + 1).map(String::as_str))
                .flatten()
        })
    })
}

/// Every `Exec*=` command of a unit, continuation lines joined, split into words.
fn unit_commands(text: &str) -> Vec<Vec<String>> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| {
            l.strip_prefix("ExecStart=")
                .or_else(|| l.strip_prefix("ExecStartPre="))
        })
        .map(|c| c.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn every_systemd_unit_uses_flags_its_binary_takes() {
    let dir = deploy_dir().join("systemd");
    let mut units = 0;
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("systemd dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("unit");
        for words in unit_commands(&text) {
            let binary = Path::new(&words[0])
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            assert!(
                binary.starts_with("cloister-"),
                "{}: {binary}",
                path.display()
            );
            wrong.extend(problems(&binary, &words[1..], &[]));
        }
        units += 1;
    }
    assert_eq!(units, 4, "relay, gateway, issuer, host");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks one container of a manifest; the problems found.
fn container_problems(c: &Yaml) -> Vec<String> {
    let command = strings(&c["command"]);
    let Some(binary) = command.first().filter(|b| b.starts_with("cloister-")) else {
        return Vec::new();
    };
    let args = strings(&c["args"]);
    let env: Vec<String> = c["env"]
        .as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut wrong = problems(binary, &args, &env);
    // The port it serves, and what its probes ask.
    let listen = flag(&args, "--listen")
        .and_then(|l| l.rsplit(':').next())
        .or_else(|| flag(&args, "--first-port"))
        .and_then(|p| p.parse::<i64>().ok());
    let Some(port) = listen else {
        return wrong; // a one-shot container (preflight)
    };
    let declared = c["ports"][0]["containerPort"].as_i64();
    if declared != Some(port) {
        wrong.push(format!("{binary}: serves {port}, declares {declared:?}"));
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        let p = &c[probe];
        if p.is_badvalue() {
            continue;
        }
        let (path, at) = match (&p["httpGet"], &p["tcpSocket"]) {
            (h, _) if !h.is_badvalue() => (h["path"].as_str(), h["port"].as_i64()),
            (_, t) => (Some(HEALTH_PATH), t["port"].as_i64()),
        };
        if path != Some(HEALTH_PATH) || at != Some(port) {
            wrong.push(format!(
                "{binary} {probe}: {path:?} at {at:?}, serves {port}"
            ));
        }
    }
    wrong
}

#[test]
fn every_kubernetes_container_matches_its_binary() {
    let dir = deploy_dir().join("kubernetes");
    let (mut checked, mut wrong) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(&dir).expect("kubernetes dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("manifest");
        let docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for d in docs {
            let spec = &d["spec"]["template"]["spec"];
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_vec().into_iter().flatten() {
                    if let Some(b) = strings(&c["command"]).first() {
                        checked.push(format!("{} {b}", d["kind"].as_str().unwrap_or("?")));
                    }
                    wrong.extend(container_problems(c));
                }
            }
        }
    }
    checked.sort();
    for want in [
        "DaemonSet cloister-host",
        "Deployment cloister-gateway",
        "Deployment cloister-issuer",
        "Deployment cloister-relay",
    ] {
        assert!(
            checked.iter().any(|c| c == want),
            "{want} missing: {checked:?}"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The checker itself finds what is wrong.
#[test]
fn the_checker_finds_an_unknown_flag_a_wrong_port_and_a_wrong_probe() {
    let args = [
        "--listen=0.0.0.0:8701".to_owned(),
        "--no-such-flag=1".to_owned(),
    ];
    let found = problems("cloister-gateway", &args, &["CLOISTER_GATEWAY_NOPE".into()]);
    assert_eq!(found.len(), 2, "{found:?}");
    let c = &YamlLoader::load_from_str(
        "command: [cloister-relay]\nargs: [--listen=0.0.0.0:8700]\n\
         ports: [{containerPort: 8000}]\nreadinessProbe: {httpGet: {path: /ready, port: 8700}}\n",
    )
    .expect("yaml")[0];
    assert_eq!(
        container_problems(c).len(),
        2,
        "{:?}",
        container_problems(c)
    );
}
