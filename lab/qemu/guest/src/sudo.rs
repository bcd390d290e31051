//! `sudo COMMAND [ARG]...` for the lab image, installed setuid root: runs the command as root.
//!
//! It checks nothing (who may use it is decided by who can log in: the lab's image is for
//! tests only). roundhouse runs `sudo touch …`, `sudo tee …`, `sudo rm -f …` and
//! `sudo systemctl reboot`; the few options it or an operator might pass are accepted and
//! ignored.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The command line after sudo's own options (`-n`, `-E`, `-H`, `--`).
pub fn command_line(args: &[OsString]) -> &[OsString] {
    let mut rest = args;
    while let Some(first) = rest.first() {
        match first.to_str() {
            Some("--") => return &rest[1..],
            Some("-n" | "-E" | "-H" | "-S") => rest = &rest[1..],
            _ => break,
        }
    }
    rest
}

/// Replaces the process with `args` run as uid 0, gid 0. Returns only on failure.
pub fn exec(args: &[OsString]) -> std::io::Error {
    let Some((program, rest)) = command_line(args).split_first() else {
        return std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: sudo COMMAND [ARG]...",
        );
    };
    // Setting the ids in the child makes the real ids root too (the effective id already is,
    // through the setuid bit), so shells started by the command do not drop privileges.
    Command::new(program)
        .args(rest)
        .uid(0)
        .gid(0)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .exec()
}

#[cfg(test)]
mod tests {
    use super::command_line;
    use std::ffi::OsString;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn options_are_skipped_up_to_the_command() {
        assert_eq!(
            command_line(&os(&["-n", "touch", "/x"])),
            os(&["touch", "/x"])
        );
        assert_eq!(command_line(&os(&["--", "-n"])), os(&["-n"]));
        assert_eq!(
            command_line(&os(&["rm", "-f", "/x"])),
            os(&["rm", "-f", "/x"])
        );
        assert!(command_line(&os(&["-n"])).is_empty());
    }
}
