//! Diagnostics: for each `tests/diagnostics/X.bu`, what the `butane` CLI writes to stderr
//! must equal `X.stderr` (message, path, line and column of every entry, then the failure
//! line).
//!
//! Where the expectations come from: CoreOS Butane v0.19.0 built from the upstream tag and
//! run as `butane X.bu`, with three wording updates that upstream's main branch (the vendored
//! Ignition there) has made since and that this crate follows:
//! - "Unused key K" became "unused key K";
//! - the context-tree warning lost its final period;
//! - the special-mode-bits warning reads "...not supported or functional in spec versions
//!   older than 3.6.0" and now also applies to 3.4.0 output (one extra line in
//!   `strictwarn.stderr`).

use std::path::{Path, PathBuf};

use butane::{Error, Kind, Options};

/// The stderr of `butane FILE` (Butane's `internal/main.go`): the report, then on failure
/// `Error translating config: ...` (or the bare strict message).
fn cli_stderr(input: &str, options: &Options) -> (String, bool) {
    match butane::translate(input, options) {
        Ok(t) => (t.report.to_string(), true),
        Err(e) => {
            let mut s = String::new();
            if let Some(r) = e.report().filter(|_| !matches!(e, Error::Types { .. })) {
                s.push_str(&r.to_string());
            }
            match e {
                Error::Strict(_) => s.push_str(&format!("{e}\n")),
                _ => s.push_str(&format!("Error translating config: {e}\n")),
            }
            (s, false)
        }
    }
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bu"))
        .collect();
    v.sort();
    v
}

#[test]
fn stderr_matches_reference_butane() {
    let all = cases();
    assert!(
        all.len() >= 25,
        "expected the diagnostics set, found {}",
        all.len()
    );
    for bu in all {
        let input = std::fs::read_to_string(&bu).unwrap();
        // `local_*` cases run with `--files-dir tests/fixtures/files`, written `@FILES@` in
        // the expected text.
        let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/files");
        let name = bu.file_name().unwrap().to_string_lossy().into_owned();
        let options = Options {
            files_dir: name.starts_with("local_").then(|| files.clone()),
            strict: false,
        };
        let expected = std::fs::read_to_string(bu.with_extension("stderr"))
            .unwrap()
            .replace("@FILES@", &files.to_string_lossy());
        let (actual, _) = cli_stderr(&input, &options);
        assert_eq!(actual, expected, "{}", bu.display());
    }
}

#[test]
fn strict_turns_warnings_into_failure() {
    let input = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/diagnostics/enabled_no_install.bu"),
    )
    .unwrap();
    let (lax, ok) = cli_stderr(&input, &Options::default());
    assert!(ok);
    let strict = Options {
        strict: true,
        ..Options::default()
    };
    let (s, ok) = cli_stderr(&input, &strict);
    assert!(!ok);
    // Butane v0.19.0 `butane --strict`: the warnings, then this line.
    assert_eq!(
        s,
        format!("{lax}Config produced warnings and --strict was specified\n")
    );
}

#[test]
fn entries_carry_path_line_and_column() {
    // Same entry as Butane v0.19.0's
    // "warning at $.systemd.units.0.contents, line 7 col 17: unit ...".
    let t = butane::translate(
        "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n      enabled: true\n      contents: |\n        [Service]\n        ExecStart=/bin/true\n",
        &Options::default(),
    )
    .unwrap();
    let e = &t.report.entries[0];
    assert_eq!(e.kind, Kind::Warning);
    assert_eq!(e.path, "$.systemd.units.0.contents");
    assert_eq!((e.line, e.column), (Some(7), Some(17)));
    assert_eq!(
        e.message,
        "unit \"a.service\" is enabled, but has no install section so enable does nothing"
    );
}

#[test]
fn type_errors_have_positions() {
    let err = butane::translate(
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /a\n      mode: rw\n",
        &Options::default(),
    )
    .unwrap_err();
    let r = err.report().expect("type errors come with entries");
    assert_eq!(r.entries.len(), 1);
    assert_eq!(r.entries[0].message, "cannot unmarshal !!str `rw` into int");
    assert_eq!(
        (r.entries[0].line, r.entries[0].column),
        (Some(6), Some(13))
    );
}

#[test]
fn syntax_errors_have_positions() {
    let err = butane::translate("variant: flatcar\na: b: c\n", &Options::default()).unwrap_err();
    match err {
        Error::Syntax { line, column, .. } => assert_eq!((line, column), (2, 5)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn local_files_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ok.txt"), "x").unwrap();
    let opts = Options {
        files_dir: Some(dir.path().to_path_buf()),
        strict: false,
    };
    let base = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /a\n      contents:\n        local: ";
    // Messages as in Butane's base/v0_5 translate_test.go ("attempted directory traversal",
    // "attempted inclusion of nonexistent file").
    let err = butane::translate(&format!("{base}../escape\n"), &opts).unwrap_err();
    assert_eq!(
        err.report().unwrap().to_string(),
        "error at $.storage.files.0.contents.local, line 7 col 16: local file path traverses outside the files directory\n"
    );
    let err = butane::translate(&format!("{base}missing\n"), &opts).unwrap_err();
    assert_eq!(
        err.report().unwrap().to_string(),
        format!(
            "error at $.storage.files.0.contents.local, line 7 col 16: open {}/missing: no such file or directory\n",
            dir.path().display()
        )
    );
    let ok = butane::translate(&format!("{base}ok.txt\n"), &opts).unwrap();
    assert_eq!(
        ok.config["storage"]["files"][0]["contents"]["source"],
        "data:,x"
    );
}

#[test]
fn pretty_format_points_at_the_token() {
    let src = "variant: flatcar\nversion: 1.0.0\nbogus: 1\n";
    let t = butane::translate(src, &Options::default()).unwrap();
    // Layout of Butane main's internal/report FormatError (no colour).
    assert_eq!(
        t.report.format_pretty("in.bu", src, false),
        "warning[$.bogus]:\n  --> in.bu:3:1\n   |\n 1 | variant: flatcar\n 2 | version: 1.0.0\n 3 | bogus: 1\n   | ^^^^^^ unused key bogus\n 4 | \n   |\n"
    );
}

#[test]
fn inline_merged_configs_are_validated() {
    // Butane v0.24+ (base/v0_5/util.go ValidateIgnitionConfig), read from upstream's code: an
    // inline config under ignition.config is parsed as the spec's Ignition config; another
    // version only warns (at `<resource>.version`); a config that does not parse fails with
    // "config is not valid" at `<resource>.inline`.
    let doc = |inline: &str| {
        format!(
            "variant: flatcar\nversion: 1.0.0\nignition:\n  config:\n    merge:\n      - inline: '{inline}'\n"
        )
    };
    let t = butane::translate(
        &doc(r#"{"ignition":{"version":"3.9.0"}}"#),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        t.report.to_string(),
        "warning at $.ignition.config.merge.0.version, line 6 col 9: skipping validation for the merge/replace ignition config due to an unkown version\n"
    );
    let err = butane::translate(&doc("not json"), &Options::default()).unwrap_err();
    let r = err.report().unwrap();
    assert_eq!(r.entries.last().unwrap().message, "config is not valid");
    assert_eq!(
        r.entries.last().unwrap().path,
        "$.ignition.config.merge.0.inline"
    );
    let ok = butane::translate(
        &doc(r#"{"ignition":{"version":"3.3.0"}}"#),
        &Options::default(),
    );
    assert!(ok.is_ok_and(|t| t.report.is_empty()));
}

/// Besides go-yaml's line, a syntax error carries where the problem is: the tab itself, and
/// the start of a key indented one space short.
#[test]
fn syntax_errors_point_at_the_problem() {
    let tab =
        "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n\t  mode: 420\n";
    match butane::translate(tab, &Options::default()).unwrap_err() {
        Error::Syntax {
            problem_line,
            column,
            ..
        } => assert_eq!((problem_line, column), (6, 1)),
        other => panic!("unexpected {other:?}"),
    }
    let short = "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/a\n      mode: 420\n     contents:\n        inline: x\n";
    match butane::translate(short, &Options::default()).unwrap_err() {
        Error::Syntax {
            line,
            problem_line,
            column,
            ..
        } => {
            // go-yaml prints the 0-based line of the enclosing mapping (`- path:`), here 4.
            assert_eq!(line, 4);
            assert_eq!((problem_line, column), (7, 6));
        }
        other => panic!("unexpected {other:?}"),
    }
}
