//! Shapes of the Butane input (`flatcar` 1.0.0 / 1.1.0, i.e. Butane's base v0_4 / v0_5) and of
//! the Ignition output (spec 3.3.0 / 3.4.0), in the field order of the Go structs, because that
//! order decides the order of report entries and of the output JSON's keys.

/// Which Butane spec is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// flatcar 1.0.0: Butane base v0_4, Ignition 3.3.0.
    V1_0,
    /// flatcar 1.1.0: Butane base v0_5, Ignition 3.4.0.
    V1_1,
}

impl Spec {
    /// Go package that holds the Butane types, as go-yaml names them in errors.
    pub fn base_package(self) -> &'static str {
        match self {
            Spec::V1_0 => "v0_4",
            Spec::V1_1 => "v0_5",
        }
    }

    /// The Ignition version the spec produces.
    pub fn ignition_version(self) -> &'static str {
        match self {
            Spec::V1_0 => "3.3.0",
            Spec::V1_1 => "3.4.0",
        }
    }
}

/// A Butane (YAML side) type.
#[derive(Debug)]
pub enum Ty {
    /// A string (go-yaml stores any scalar's text in one).
    Str,
    /// A Go `int`.
    Int,
    /// A Go `bool` (YAML 1.1 spellings like `yes` accepted).
    Bool,
    /// A list; the name is the Go element type for error messages (`""` = `string`), or with
    /// a leading `=` the Go name of the list type itself.
    List(&'static Ty, &'static str),
    /// A struct.
    Struct(&'static Struct),
}

/// A Butane struct.
#[derive(Debug)]
pub struct Struct {
    /// Go type name without package.
    pub name: &'static str,
    /// Fields in Go order: YAML key, type, whether only spec 1.1 has it.
    pub fields: &'static [(&'static str, Ty, bool)],
}

impl Struct {
    /// The fields that `spec` knows.
    pub fn fields(&self, spec: Spec) -> impl Iterator<Item = &'static (&'static str, Ty, bool)> {
        let v11 = spec == Spec::V1_1;
        self.fields.iter().filter(move |f| v11 || !f.2)
    }
}

macro_rules! s {
    ($name:ident, $go:expr, [$(($k:expr, $t:expr $(, $new:expr)?)),* $(,)?]) => {
        pub static $name: Struct = Struct {
            name: $go,
            fields: &[$(($k, $t, false $(|| $new)?)),*],
        };
    };
}

use Ty::{Bool, Int, Str};

s!(
    CONFIG,
    "Config",
    [
        ("version", Str),
        ("variant", Str),
        ("ignition", Ty::Struct(&IGNITION)),
        ("kernel_arguments", Ty::Struct(&KERNEL_ARGUMENTS)),
        ("passwd", Ty::Struct(&PASSWD)),
        ("storage", Ty::Struct(&STORAGE)),
        ("systemd", Ty::Struct(&SYSTEMD)),
    ]
);
s!(
    CLEVIS,
    "Clevis",
    [
        ("custom", Ty::Struct(&CLEVIS_CUSTOM)),
        ("tang", Ty::List(&Ty::Struct(&TANG), "Tang")),
        ("threshold", Int),
        ("tpm2", Bool),
    ]
);
s!(
    CLEVIS_CUSTOM,
    "ClevisCustom",
    [("config", Str), ("needs_network", Bool), ("pin", Str)]
);
s!(
    DIRECTORY,
    "Directory",
    [
        ("group", Ty::Struct(&NODE_GROUP)),
        ("overwrite", Bool),
        ("path", Str),
        ("user", Ty::Struct(&NODE_USER)),
        ("mode", Int),
    ]
);
s!(
    DISK,
    "Disk",
    [
        ("device", Str),
        ("partitions", Ty::List(&Ty::Struct(&PARTITION), "Partition")),
        ("wipe_table", Bool),
    ]
);
s!(
    DROPIN,
    "Dropin",
    [
        ("contents", Str),
        ("contents_local", Str, true),
        ("name", Str)
    ]
);
s!(
    FILE,
    "File",
    [
        ("group", Ty::Struct(&NODE_GROUP)),
        ("overwrite", Bool),
        ("path", Str),
        ("user", Ty::Struct(&NODE_USER)),
        ("append", Ty::List(&Ty::Struct(&RESOURCE), "Resource")),
        ("contents", Ty::Struct(&RESOURCE)),
        ("mode", Int),
    ]
);
s!(
    FILESYSTEM,
    "Filesystem",
    [
        ("device", Str),
        ("format", Str),
        ("label", Str),
        ("mount_options", Ty::List(&Ty::Str, "")),
        ("options", Ty::List(&Ty::Str, "")),
        ("path", Str),
        ("uuid", Str),
        ("wipe_filesystem", Bool),
        ("with_mount_unit", Bool),
    ]
);
s!(HTTP_HEADER, "HTTPHeader", [("name", Str), ("value", Str)]);
s!(
    IGNITION,
    "Ignition",
    [
        ("config", Ty::Struct(&IGNITION_CONFIG)),
        ("proxy", Ty::Struct(&PROXY)),
        ("security", Ty::Struct(&SECURITY)),
        ("timeouts", Ty::Struct(&TIMEOUTS)),
    ]
);
s!(
    IGNITION_CONFIG,
    "IgnitionConfig",
    [
        ("merge", Ty::List(&Ty::Struct(&RESOURCE), "Resource")),
        ("replace", Ty::Struct(&RESOURCE)),
    ]
);
s!(
    KERNEL_ARGUMENTS,
    "KernelArguments",
    [
        ("should_exist", Ty::List(&Ty::Str, "KernelArgument")),
        ("should_not_exist", Ty::List(&Ty::Str, "KernelArgument")),
    ]
);
s!(
    LINK,
    "Link",
    [
        ("group", Ty::Struct(&NODE_GROUP)),
        ("overwrite", Bool),
        ("path", Str),
        ("user", Ty::Struct(&NODE_USER)),
        ("hard", Bool),
        ("target", Str),
    ]
);
s!(
    LUKS,
    "Luks",
    [
        ("clevis", Ty::Struct(&CLEVIS)),
        ("device", Str),
        ("discard", Bool, true),
        ("key_file", Ty::Struct(&RESOURCE)),
        ("label", Str),
        ("name", Str),
        ("open_options", Ty::List(&Ty::Str, ""), true),
        ("options", Ty::List(&Ty::Str, "LuksOption")),
        ("uuid", Str),
        ("wipe_volume", Bool),
    ]
);
s!(NODE_GROUP, "NodeGroup", [("id", Int), ("name", Str)]);
s!(NODE_USER, "NodeUser", [("id", Int), ("name", Str)]);
s!(
    PARTITION,
    "Partition",
    [
        ("guid", Str),
        ("label", Str),
        ("number", Int),
        ("resize", Bool),
        ("should_exist", Bool),
        ("size_mib", Int),
        ("start_mib", Int),
        ("type_guid", Str),
        ("wipe_partition_entry", Bool),
    ]
);
s!(
    PASSWD,
    "Passwd",
    [
        (
            "groups",
            Ty::List(&Ty::Struct(&PASSWD_GROUP), "PasswdGroup")
        ),
        ("users", Ty::List(&Ty::Struct(&PASSWD_USER), "PasswdUser")),
    ]
);
s!(
    PASSWD_GROUP,
    "PasswdGroup",
    [
        ("gid", Int),
        ("name", Str),
        ("password_hash", Str),
        ("should_exist", Bool),
        ("system", Bool),
    ]
);
s!(
    PASSWD_USER,
    "PasswdUser",
    [
        ("gecos", Str),
        ("groups", Ty::List(&Ty::Str, "Group")),
        ("home_dir", Str),
        ("name", Str),
        ("no_create_home", Bool),
        ("no_log_init", Bool),
        ("no_user_group", Bool),
        ("password_hash", Str),
        ("primary_group", Str),
        ("should_exist", Bool),
        (
            "ssh_authorized_keys",
            Ty::List(&Ty::Str, "SSHAuthorizedKey")
        ),
        ("ssh_authorized_keys_local", Ty::List(&Ty::Str, ""), true),
        ("shell", Str),
        ("system", Bool),
        ("uid", Int),
    ]
);
s!(
    PROXY,
    "Proxy",
    [
        ("http_proxy", Str),
        ("https_proxy", Str),
        ("no_proxy", Ty::List(&Ty::Str, ""))
    ]
);
s!(
    RAID,
    "Raid",
    [
        ("devices", Ty::List(&Ty::Str, "Device")),
        ("level", Str),
        ("name", Str),
        ("options", Ty::List(&Ty::Str, "RaidOption")),
        ("spares", Int),
    ]
);
s!(
    RESOURCE,
    "Resource",
    [
        ("compression", Str),
        (
            "http_headers",
            Ty::List(&Ty::Struct(&HTTP_HEADER), "=HTTPHeaders")
        ),
        ("source", Str),
        ("inline", Str),
        ("local", Str),
        ("verification", Ty::Struct(&VERIFICATION)),
    ]
);
s!(SECURITY, "Security", [("tls", Ty::Struct(&TLS))]);
s!(
    STORAGE,
    "Storage",
    [
        (
            "directories",
            Ty::List(&Ty::Struct(&DIRECTORY), "Directory")
        ),
        ("disks", Ty::List(&Ty::Struct(&DISK), "Disk")),
        ("files", Ty::List(&Ty::Struct(&FILE), "File")),
        (
            "filesystems",
            Ty::List(&Ty::Struct(&FILESYSTEM), "Filesystem")
        ),
        ("links", Ty::List(&Ty::Struct(&LINK), "Link")),
        ("luks", Ty::List(&Ty::Struct(&LUKS), "Luks")),
        ("raid", Ty::List(&Ty::Struct(&RAID), "Raid")),
        ("trees", Ty::List(&Ty::Struct(&TREE), "Tree")),
    ]
);
s!(
    SYSTEMD,
    "Systemd",
    [("units", Ty::List(&Ty::Struct(&UNIT), "Unit"))]
);
s!(
    TANG,
    "Tang",
    [
        ("thumbprint", Str),
        ("url", Str),
        ("advertisement", Str, true)
    ]
);
s!(
    TLS,
    "TLS",
    [(
        "certificate_authorities",
        Ty::List(&Ty::Struct(&RESOURCE), "Resource")
    )]
);
s!(
    TIMEOUTS,
    "Timeouts",
    [("http_response_headers", Int), ("http_total", Int)]
);
s!(TREE, "Tree", [("local", Str), ("path", Str)]);
s!(
    UNIT,
    "Unit",
    [
        ("contents", Str),
        ("contents_local", Str, true),
        ("dropins", Ty::List(&Ty::Struct(&DROPIN), "Dropin")),
        ("enabled", Bool),
        ("mask", Bool),
        ("name", Str),
    ]
);
s!(VERIFICATION, "Verification", [("hash", Str)]);

/// An Ignition (JSON side) type.
#[derive(Debug)]
pub enum JTy {
    /// String.
    Str,
    /// Integer.
    Int,
    /// Boolean.
    Bool,
    /// List of items.
    List(&'static JTy),
    /// Struct.
    Struct(&'static JStruct),
}

/// How a JSON field is held in Ignition's Go struct, which decides merging and omission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// A pointer: absent = nil.
    Ptr,
    /// A plain value: absent = zero value.
    Plain,
    /// A plain value that is not omitted when zero (`json:"path"`).
    Always,
}

/// One field of an Ignition struct.
#[derive(Debug)]
pub struct JField {
    /// JSON key.
    pub name: &'static str,
    /// Type.
    pub ty: JTy,
    /// How it is held.
    pub hold: Hold,
    /// Lists only: items are appended rather than merged by key (`IgnoreDuplicates`).
    pub ignore_dups: bool,
    /// Lists only: lists sharing a handle are deduplicated and merged together (`MergedKeys`).
    pub handle: Option<&'static str>,
    /// Only in spec 3.4.0.
    pub v34: bool,
}

/// An Ignition struct: fields in Go order, embedded `Node` first.
#[derive(Debug)]
pub struct JStruct {
    /// Go type name.
    pub name: &'static str,
    /// Fields.
    pub fields: &'static [JField],
}

const fn f(name: &'static str, ty: JTy, hold: Hold) -> JField {
    JField {
        name,
        ty,
        hold,
        ignore_dups: false,
        handle: None,
        v34: false,
    }
}
const fn v34(mut fl: JField) -> JField {
    fl.v34 = true;
    fl
}
const fn appended(mut fl: JField) -> JField {
    fl.ignore_dups = true;
    fl
}
const fn handle(mut fl: JField, h: &'static str) -> JField {
    fl.handle = Some(h);
    fl
}

use Hold::{Always, Plain, Ptr};

macro_rules! j {
    ($name:ident, $go:expr, [$($fl:expr),* $(,)?]) => {
        pub static $name: JStruct = JStruct { name: $go, fields: &[$($fl),*] };
    };
}

j!(
    J_CONFIG,
    "Config",
    [
        f("ignition", JTy::Struct(&J_IGNITION), Always),
        f("kernelArguments", JTy::Struct(&J_KERNEL_ARGUMENTS), Plain),
        f("passwd", JTy::Struct(&J_PASSWD), Plain),
        f("storage", JTy::Struct(&J_STORAGE), Plain),
        f("systemd", JTy::Struct(&J_SYSTEMD), Plain),
    ]
);
j!(
    J_CLEVIS,
    "Clevis",
    [
        f("custom", JTy::Struct(&J_CLEVIS_CUSTOM), Plain),
        f("tang", JTy::List(&JTy::Struct(&J_TANG)), Plain),
        f("threshold", JTy::Int, Ptr),
        f("tpm2", JTy::Bool, Ptr),
    ]
);
j!(
    J_CLEVIS_CUSTOM,
    "ClevisCustom",
    [
        f("config", JTy::Str, Ptr),
        f("needsNetwork", JTy::Bool, Ptr),
        f("pin", JTy::Str, Ptr),
    ]
);
j!(
    J_DIRECTORY,
    "Directory",
    [
        f("group", JTy::Struct(&J_NODE_GROUP), Plain),
        f("overwrite", JTy::Bool, Ptr),
        f("path", JTy::Str, Always),
        f("user", JTy::Struct(&J_NODE_USER), Plain),
        f("mode", JTy::Int, Ptr),
    ]
);
j!(
    J_DISK,
    "Disk",
    [
        f("device", JTy::Str, Always),
        f("partitions", JTy::List(&JTy::Struct(&J_PARTITION)), Plain),
        f("wipeTable", JTy::Bool, Ptr),
    ]
);
j!(
    J_DROPIN,
    "Dropin",
    [f("contents", JTy::Str, Ptr), f("name", JTy::Str, Always)]
);
j!(
    J_FILE,
    "File",
    [
        f("group", JTy::Struct(&J_NODE_GROUP), Plain),
        f("overwrite", JTy::Bool, Ptr),
        f("path", JTy::Str, Always),
        f("user", JTy::Struct(&J_NODE_USER), Plain),
        appended(f("append", JTy::List(&JTy::Struct(&J_RESOURCE)), Plain)),
        f("contents", JTy::Struct(&J_RESOURCE), Plain),
        f("mode", JTy::Int, Ptr),
    ]
);
j!(
    J_FILESYSTEM,
    "Filesystem",
    [
        f("device", JTy::Str, Always),
        f("format", JTy::Str, Ptr),
        f("label", JTy::Str, Ptr),
        appended(f("mountOptions", JTy::List(&JTy::Str), Plain)),
        appended(f("options", JTy::List(&JTy::Str), Plain)),
        f("path", JTy::Str, Ptr),
        f("uuid", JTy::Str, Ptr),
        f("wipeFilesystem", JTy::Bool, Ptr),
    ]
);
j!(
    J_HTTP_HEADER,
    "HTTPHeader",
    [f("name", JTy::Str, Always), f("value", JTy::Str, Ptr)]
);
j!(
    J_IGNITION,
    "Ignition",
    [
        f("config", JTy::Struct(&J_IGNITION_CONFIG), Plain),
        f("proxy", JTy::Struct(&J_PROXY), Plain),
        f("security", JTy::Struct(&J_SECURITY), Plain),
        f("timeouts", JTy::Struct(&J_TIMEOUTS), Plain),
        f("version", JTy::Str, Always),
    ]
);
j!(
    J_IGNITION_CONFIG,
    "IgnitionConfig",
    [
        f("merge", JTy::List(&JTy::Struct(&J_RESOURCE)), Plain),
        f("replace", JTy::Struct(&J_RESOURCE), Plain),
    ]
);
j!(
    J_KERNEL_ARGUMENTS,
    "KernelArguments",
    [
        handle(
            f("shouldExist", JTy::List(&JTy::Str), Plain),
            "KernelArgument"
        ),
        handle(
            f("shouldNotExist", JTy::List(&JTy::Str), Plain),
            "KernelArgument"
        ),
    ]
);
j!(
    J_LINK,
    "Link",
    [
        f("group", JTy::Struct(&J_NODE_GROUP), Plain),
        f("overwrite", JTy::Bool, Ptr),
        f("path", JTy::Str, Always),
        f("user", JTy::Struct(&J_NODE_USER), Plain),
        f("hard", JTy::Bool, Ptr),
        f("target", JTy::Str, Ptr),
    ]
);
j!(
    J_LUKS,
    "Luks",
    [
        f("clevis", JTy::Struct(&J_CLEVIS), Plain),
        f("device", JTy::Str, Ptr),
        v34(f("discard", JTy::Bool, Ptr)),
        f("keyFile", JTy::Struct(&J_RESOURCE), Plain),
        f("label", JTy::Str, Ptr),
        f("name", JTy::Str, Always),
        v34(f("openOptions", JTy::List(&JTy::Str), Plain)),
        appended(f("options", JTy::List(&JTy::Str), Plain)),
        f("uuid", JTy::Str, Ptr),
        f("wipeVolume", JTy::Bool, Ptr),
    ]
);
j!(
    J_NODE_GROUP,
    "NodeGroup",
    [f("id", JTy::Int, Ptr), f("name", JTy::Str, Ptr)]
);
j!(
    J_NODE_USER,
    "NodeUser",
    [f("id", JTy::Int, Ptr), f("name", JTy::Str, Ptr)]
);
j!(
    J_PARTITION,
    "Partition",
    [
        f("guid", JTy::Str, Ptr),
        f("label", JTy::Str, Ptr),
        f("number", JTy::Int, Plain),
        f("resize", JTy::Bool, Ptr),
        f("shouldExist", JTy::Bool, Ptr),
        f("sizeMiB", JTy::Int, Ptr),
        f("startMiB", JTy::Int, Ptr),
        f("typeGuid", JTy::Str, Ptr),
        f("wipePartitionEntry", JTy::Bool, Ptr),
    ]
);
j!(
    J_PASSWD,
    "Passwd",
    [
        f("groups", JTy::List(&JTy::Struct(&J_PASSWD_GROUP)), Plain),
        f("users", JTy::List(&JTy::Struct(&J_PASSWD_USER)), Plain),
    ]
);
j!(
    J_PASSWD_GROUP,
    "PasswdGroup",
    [
        f("gid", JTy::Int, Ptr),
        f("name", JTy::Str, Always),
        f("passwordHash", JTy::Str, Ptr),
        f("shouldExist", JTy::Bool, Ptr),
        f("system", JTy::Bool, Ptr),
    ]
);
j!(
    J_PASSWD_USER,
    "PasswdUser",
    [
        f("gecos", JTy::Str, Ptr),
        f("groups", JTy::List(&JTy::Str), Plain),
        f("homeDir", JTy::Str, Ptr),
        f("name", JTy::Str, Always),
        f("noCreateHome", JTy::Bool, Ptr),
        f("noLogInit", JTy::Bool, Ptr),
        f("noUserGroup", JTy::Bool, Ptr),
        f("passwordHash", JTy::Str, Ptr),
        f("primaryGroup", JTy::Str, Ptr),
        f("sshAuthorizedKeys", JTy::List(&JTy::Str), Plain),
        f("shell", JTy::Str, Ptr),
        f("shouldExist", JTy::Bool, Ptr),
        f("system", JTy::Bool, Ptr),
        f("uid", JTy::Int, Ptr),
    ]
);
j!(
    J_PROXY,
    "Proxy",
    [
        f("httpProxy", JTy::Str, Ptr),
        f("httpsProxy", JTy::Str, Ptr),
        f("noProxy", JTy::List(&JTy::Str), Plain),
    ]
);
j!(
    J_RAID,
    "Raid",
    [
        f("devices", JTy::List(&JTy::Str), Plain),
        f("level", JTy::Str, Ptr),
        f("name", JTy::Str, Always),
        appended(f("options", JTy::List(&JTy::Str), Plain)),
        f("spares", JTy::Int, Ptr),
    ]
);
j!(
    J_RESOURCE,
    "Resource",
    [
        f("compression", JTy::Str, Ptr),
        f(
            "httpHeaders",
            JTy::List(&JTy::Struct(&J_HTTP_HEADER)),
            Plain
        ),
        f("source", JTy::Str, Ptr),
        f("verification", JTy::Struct(&J_VERIFICATION), Plain),
    ]
);
j!(
    J_SECURITY,
    "Security",
    [f("tls", JTy::Struct(&J_TLS), Plain)]
);
j!(
    J_STORAGE,
    "Storage",
    [
        handle(
            f("directories", JTy::List(&JTy::Struct(&J_DIRECTORY)), Plain),
            "Node"
        ),
        f("disks", JTy::List(&JTy::Struct(&J_DISK)), Plain),
        handle(f("files", JTy::List(&JTy::Struct(&J_FILE)), Plain), "Node"),
        f("filesystems", JTy::List(&JTy::Struct(&J_FILESYSTEM)), Plain),
        handle(f("links", JTy::List(&JTy::Struct(&J_LINK)), Plain), "Node"),
        f("luks", JTy::List(&JTy::Struct(&J_LUKS)), Plain),
        f("raid", JTy::List(&JTy::Struct(&J_RAID)), Plain),
    ]
);
j!(
    J_SYSTEMD,
    "Systemd",
    [f("units", JTy::List(&JTy::Struct(&J_UNIT)), Plain)]
);
j!(
    J_TANG,
    "Tang",
    [
        v34(f("advertisement", JTy::Str, Ptr)),
        f("thumbprint", JTy::Str, Ptr),
        f("url", JTy::Str, Plain),
    ]
);
j!(
    J_TLS,
    "TLS",
    [f(
        "certificateAuthorities",
        JTy::List(&JTy::Struct(&J_RESOURCE)),
        Plain
    )]
);
j!(
    J_TIMEOUTS,
    "Timeouts",
    [
        f("httpResponseHeaders", JTy::Int, Ptr),
        f("httpTotal", JTy::Int, Ptr)
    ]
);
j!(
    J_UNIT,
    "Unit",
    [
        f("contents", JTy::Str, Ptr),
        f("dropins", JTy::List(&JTy::Struct(&J_DROPIN)), Plain),
        f("enabled", JTy::Bool, Ptr),
        f("mask", JTy::Bool, Ptr),
        f("name", JTy::Str, Always),
    ]
);
j!(J_VERIFICATION, "Verification", [f("hash", JTy::Str, Ptr)]);

/// Ignition's camelCase key to Butane's snake_case key (Butane's `Snake`).
pub fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    let mut rest = camel;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("MiB") {
            out.push_str("_mib");
            rest = r;
            continue;
        }
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_matches_butane() {
        assert_eq!(snake("sizeMiB"), "size_mib");
        assert_eq!(snake("typeGuid"), "type_guid");
        assert_eq!(snake("httpHeaders"), "http_headers");
        assert_eq!(snake("sshAuthorizedKeys"), "ssh_authorized_keys");
        assert_eq!(snake("path"), "path");
    }
}
