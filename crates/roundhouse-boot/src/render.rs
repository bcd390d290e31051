//! Response bodies that do not need the template engine: iPXE and GRUB scripts built from a
//! profile, the `/metadata` env file, and the data templates see.
//!
//! The byte layout of every body here is matchbox's, including its quirks (two spaces after
//! `initrdefi`), because users diff them and some clients are picky.

use bootdata::{Boot, Group};
use serde_json::{Map, Value};

use crate::labels::Labels;

/// The script served at `/boot.ipxe` and `/boot.ipxe.0`: it makes iPXE chain-load `/ipxe` with
/// its identity in the query string.
pub const IPXE_BOOTSTRAP: &str = "#!ipxe\nchain ipxe?uuid=${uuid}&mac=${mac:hexhyp}&domain=${domain}&hostname=${hostname}&serial=${serial}&arch=${buildarch:uristring}\n";

/// The iPXE script for a profile's boot settings.
pub fn ipxe_script(boot: &Boot) -> String {
    let mut s = String::from("#!ipxe\nkernel ");
    s.push_str(&boot.kernel);
    for arg in &boot.args {
        s.push(' ');
        s.push_str(arg);
    }
    s.push('\n');
    for initrd in &boot.initrd {
        s.push_str("initrd ");
        s.push_str(initrd);
        s.push('\n');
    }
    s.push_str("boot\n");
    s
}

/// The GRUB config for a profile's boot settings, with matchbox's EFI and BIOS entries.
pub fn grub_config(boot: &Boot) -> String {
    let mut s = String::from("default=0\nfallback=1\ntimeout=1\n");
    for (title, linux, initrd) in [
        ("CoreOS (EFI)", "linuxefi", "initrdefi"),
        ("CoreOS (BIOS)", "linux", "initrd"),
    ] {
        s.push_str(&format!(
            "menuentry \"{title}\" {{\necho \"Loading kernel\"\n{linux} \"{}\"",
            boot.kernel
        ));
        for arg in &boot.args {
            s.push(' ');
            s.push_str(arg);
        }
        s.push_str(&format!("\necho \"Loading initrd\"\n{initrd} "));
        for path in &boot.initrd {
            s.push_str(&format!(" \"{path}\""));
        }
        s.push_str("\n}\n");
    }
    s
}

/// The iPXE answer for a machine roundhouse has marked installed: boot the first local disk,
/// and if the firmware cannot (UEFI iPXE has no BIOS drive 0x80), hand control back to the
/// firmware so it tries the next boot entry.
pub fn ipxe_local_boot(mac: &str) -> String {
    format!(
        "#!ipxe\necho roundhouse: {mac} is installed, booting from local disk\nsanboot --no-describe --drive 0x80 || exit 0\n"
    )
}

/// The GRUB answer for an installed machine: leave GRUB so the firmware boots the next entry.
pub fn grub_local_boot(mac: &str) -> String {
    format!(
        "default=0\ntimeout=0\nmenuentry \"roundhouse: {mac} is installed, boot from local disk\" {{\nexit\n}}\n"
    )
}

/// The data a template sees, built as matchbox's `collectVariables` does: the group metadata,
/// then the group's selectors with lower-cased keys (overwriting metadata), then `request`
/// with the parsed labels and the raw query string.
pub fn template_data(group: &Group, labels: &Labels, raw_query: &str) -> Value {
    let mut data: Map<String, Value> = group.metadata.clone();
    // Iterating selectors in key order makes the rare `os`/`OS` collision deterministic.
    for (k, v) in &group.selector {
        data.insert(k.to_lowercase(), Value::String(v.clone()));
    }
    let mut request = Map::new();
    request.insert("query".into(), labels.to_json());
    request.insert("raw_query".into(), Value::String(raw_query.to_string()));
    data.insert("request".into(), Value::Object(request));
    Value::Object(data)
}

/// The `/metadata` env file: nested keys joined with `_` and upper-cased, one `KEY=value` line
/// per string, boolean or number leaf; arrays and nulls are skipped as matchbox skips them.
/// Keys come out sorted (matchbox's order is Go's random map order).
pub fn metadata_env(data: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = data {
        env_lines(&mut out, "", map);
    }
    out
}

fn env_lines(out: &mut String, prefix: &str, map: &Map<String, Value>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let name = format!("{prefix}{key}");
        let value = match &map[key] {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => go_float(n.as_f64().unwrap_or(f64::NAN)),
            Value::Object(inner) => {
                env_lines(out, &format!("{name}_"), inner);
                continue;
            }
            Value::Array(_) | Value::Null => continue,
        };
        out.push_str(&name.to_uppercase());
        out.push('=');
        out.push_str(&value);
        out.push('\n');
    }
}

/// Formats a float as Go's `%v` does (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest
/// digits that round-trip, in exponent form when the decimal exponent is below -4 or at least
/// 6, so `1000000` prints as `1e+06` just as matchbox prints it.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. `-1.2345e6`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if !(-4..6).contains(&exp) {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        s.push('e');
        s.push(if exp < 0 { '-' } else { '+' });
        s.push_str(&format!("{:02}", exp.unsigned_abs()));
    } else if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_boot() -> Boot {
        Boot {
            kernel: "/image/kernel".into(),
            initrd: vec!["/image/initrd_a".into(), "/image/initrd_b".into()],
            args: vec!["a=b".into(), "c".into()],
        }
    }

    // matchbox http/ipxe_test.go TestIPXEHandler.
    #[test]
    fn ipxe_matches_matchbox() {
        assert_eq!(
            ipxe_script(&fake_boot()),
            "#!ipxe\nkernel /image/kernel a=b c\ninitrd /image/initrd_a\ninitrd /image/initrd_b\nboot\n"
        );
        assert_eq!(
            ipxe_script(&Boot::default()),
            "#!ipxe\nkernel \nboot\n",
            "an empty boot renders like Go's template over zero values"
        );
    }

    // matchbox http/grub_test.go TestGrubHandler.
    #[test]
    fn grub_matches_matchbox() {
        let want = r#"default=0
fallback=1
timeout=1
menuentry "CoreOS (EFI)" {
echo "Loading kernel"
linuxefi "/image/kernel" a=b c
echo "Loading initrd"
initrdefi  "/image/initrd_a" "/image/initrd_b"
}
menuentry "CoreOS (BIOS)" {
echo "Loading kernel"
linux "/image/kernel" a=b c
echo "Loading initrd"
initrd  "/image/initrd_a" "/image/initrd_b"
}
"#;
        assert_eq!(grub_config(&fake_boot()), want);
    }

    #[test]
    fn go_float_formatting() {
        let cases = [
            (3.0, "3"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123.456, "123.456"),
            (1e21, "1e+21"),
            (1.5e-300, "1.5e-300"),
            (100000.0, "100000"),
            (0.0, "0"),
        ];
        for (f, want) in cases {
            assert_eq!(go_float(f), want, "formatting {f}");
        }
    }

    // matchbox http/metadata_test.go TestMetadataHandler (order aside, which Go leaves random).
    #[test]
    fn metadata_env_file() {
        let group: Group = serde_json::from_str(
            r#"{"id":"test-group","selector":{"mac":"52:54:00:a1:9c:ae"},
                "metadata":{"meta":"data","etcd":{"name":"node1"},"some":{"nested":{"data":"some-value"}},
                            "list":[1,2],"nothing":null,"num":3,"yes":true,"no":false}}"#,
        )
        .unwrap();
        let raw = "mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true";
        let labels = Labels::parse(raw).unwrap();
        let env = metadata_env(&template_data(&group, &labels, raw));
        assert_eq!(
            env,
            "ETCD_NAME=node1\nMAC=52:54:00:a1:9c:ae\nMETA=data\nNO=false\nNUM=3\n\
             REQUEST_QUERY_COUNT=3\nREQUEST_QUERY_FOO=bar\nREQUEST_QUERY_GATE=true\n\
             REQUEST_QUERY_MAC=52:54:00:a1:9c:ae\n\
             REQUEST_RAW_QUERY=mac=52-54-00-a1-9c-ae&foo=bar&count=3&gate=true\n\
             SOME_NESTED_DATA=some-value\nYES=true\n"
        );
    }

    #[test]
    fn selectors_override_metadata_and_request_is_reserved() {
        let group: Group = serde_json::from_str(
            r#"{"id":"g","selector":{"OS":"installed"},"metadata":{"os":"meta","request":"x"}}"#,
        )
        .unwrap();
        let data = template_data(&group, &Labels::default(), "");
        assert_eq!(data["os"], "installed");
        assert_eq!(data["request"]["raw_query"], "");
        assert!(data["request"]["query"].as_object().unwrap().is_empty());
    }
}
