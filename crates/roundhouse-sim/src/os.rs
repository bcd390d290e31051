//! The parts of a Flatcar OS image the simulation lays down: the base layout of a root
//! filesystem (what Flatcar's tmpfiles and baselayout provide before Ignition runs) and the
//! tree `flatcar-install` writes.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

/// Uid and gid of `core`, as on Flatcar.
pub const CORE_ID: u32 = 500;

fn write_if_missing(p: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    if !p.exists() {
        fs::write(p, text)?;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Fills an empty (or freshly wiped) root filesystem with Flatcar's base layout: the
/// `/usr`-merged symlinks, `/etc/passwd` with `root`, `etcd` (232), `core` (500) and `nobody`,
/// groups including `wheel`, `sudo`, `etcd` and `docker`, and `/home/core` owned by core
/// (Ignition writes its keys there as that user). Existing files are kept.
pub fn seed_root(root: &Path) -> std::io::Result<()> {
    for d in [
        "etc", "home", "root", "tmp", "var", "var/lib", "run", "dev", "proc", "sys", "usr", "boot",
        "opt", "srv", "mnt", "media",
    ] {
        let p = root.join(d);
        if !p.exists() {
            fs::create_dir_all(&p)?;
            let mode = match d {
                "tmp" => 0o1777,
                "root" => 0o700,
                _ => 0o755,
            };
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        }
    }
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let p = root.join(l);
        if fs::symlink_metadata(&p).is_err() {
            symlink(t, &p)?;
        }
    }
    let etc = root.join("etc");
    write_if_missing(
        &etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/bash\n\
         etcd:x:232:232:etcd user:/dev/null:/sbin/nologin\n\
         core:x:500:500:Flatcar Admin:/home/core:/bin/bash\n\
         nobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        0o644,
    )?;
    write_if_missing(
        &etc.join("group"),
        "root:x:0:\nwheel:x:10:root,core\nusers:x:100:\nsudo:x:150:core\netcd:x:232:\n\
         docker:x:233:core\ncore:x:500:\nnogroup:x:65534:\n",
        0o644,
    )?;
    write_if_missing(
        &etc.join("shadow"),
        "root:*:1::::::\netcd:*:1::::::\ncore:*:1::::::\nnobody:*:1::::::\n",
        0o640,
    )?;
    let home = root.join("home/core");
    if !home.exists() {
        fs::create_dir_all(&home)?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755))?;
        chown(&home, CORE_ID, CORE_ID, false)?;
    }
    Ok(())
}

/// Changes a path's owner (`lchown` when `nofollow`). Without root there are no other users
/// to give files to (the user namespace maps only the caller), so that failure is ignored:
/// the simulation then runs with every file owned by the caller.
pub fn chown(p: &Path, uid: u32, gid: u32, nofollow: bool) -> std::io::Result<()> {
    let r = if nofollow {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
    } else {
        std::os::unix::fs::chown(p, Some(uid), Some(gid))
    };
    match r {
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied && !crate::sandbox::is_root() =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Removes everything inside `dir` but keeps `dir` itself (its inode may be a mount source).
pub fn clear_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p)?,
            Ok(_) => fs::remove_file(&p)?,
            Err(_) => {}
        }
    }
    Ok(())
}
