//! Ignition config merging. The first cases are Ignition's own (coreos/ignition
//! `config/merge/merge_test.go`, `TestMerge`), written as Ignition JSON; the rest exercise
//! rules of `merge.go` that those cases do not reach, with the expected result derived from
//! the rule named in each comment.

use butane::merge::merge;
use serde_json::{Value, json};

fn check(parent: Value, child: Value, expected: Value) {
    let got = merge(&parent, &child);
    assert_eq!(got, expected, "\nparent: {parent}\nchild:  {child}");
}

#[test]
fn empty_configs() {
    // merge_test.go case 1: merging empty configs is empty (version is a plain string).
    check(json!({}), json!({}), json!({"ignition": {"version": ""}}));
}

#[test]
fn child_version_wins() {
    // merge_test.go case 2.
    check(
        json!({"ignition": {"version": "1234"}}),
        json!({"ignition": {"version": "haha this isn't validated"}}),
        json!({"ignition": {"version": "haha this isn't validated"}}),
    );
}

#[test]
fn disks_files_nodes_and_keys() {
    // merge_test.go case 3: disks by device, partitions by number, file appends concatenated,
    // a parent file replaced by a child directory at the same path (shared Node key space),
    // ssh keys merged by value.
    let parent = json!({
        "ignition": {"version": ""},
        "passwd": {"users": [{"name": "bovik", "sshAuthorizedKeys": ["one", "two"]}]},
        "storage": {
            "disks": [
                {"device": "foo", "wipeTable": true,
                 "partitions": [{"number": 1, "label": "label", "startMiB": 4}]},
                {"device": "bar", "wipeTable": true}
            ],
            "files": [
                {"path": "/foo", "append": [{"source": "source1"}]},
                {"path": "/bar", "contents": {"compression": "gzip"}}
            ]
        }
    });
    let child = json!({
        "ignition": {"version": ""},
        "passwd": {"users": [{"name": "bovik", "sshAuthorizedKeys": ["three", "two"]}]},
        "storage": {
            "disks": [
                {"device": "foo", "wipeTable": false,
                 "partitions": [{"number": 1, "label": "labelchanged"}, {"number": 2, "label": "label2"}]},
                {"device": "bar"},
                {"device": "baz", "wipeTable": true}
            ],
            "files": [{"path": "/foo", "append": [{"source": "source1"}, {"source": "source2"}]}],
            "directories": [{"path": "/bar"}],
            "links": [{"path": "/baz"}]
        }
    });
    let expected = json!({
        "ignition": {"version": ""},
        "passwd": {"users": [{"name": "bovik", "sshAuthorizedKeys": ["one", "two", "three"]}]},
        "storage": {
            "directories": [{"path": "/bar"}],
            "disks": [
                {"device": "foo", "partitions": [
                    {"label": "labelchanged", "number": 1, "startMiB": 4},
                    {"label": "label2", "number": 2}], "wipeTable": false},
                {"device": "bar", "wipeTable": true},
                {"device": "baz", "wipeTable": true}
            ],
            "files": [{"path": "/foo", "append": [
                {"source": "source1"}, {"source": "source1"}, {"source": "source2"}]}],
            "links": [{"path": "/baz"}]
        }
    });
    check(parent, child, expected);
}

fn headers_case(wrap: fn(Value) -> Value) {
    // merge_test.go: a child header without a value removes the parent's header; others
    // merge by name.
    let parent = wrap(json!([
        {"name": "old-header", "value": "old-value"},
        {"name": "same-header", "value": "old-value"},
        {"name": "to-remove-header", "value": "some-value"}
    ]));
    let child = wrap(json!([
        {"name": "to-remove-header"},
        {"name": "new-header", "value": "new-value"},
        {"name": "same-header", "value": "new-value"}
    ]));
    let expected = wrap(json!([
        {"name": "old-header", "value": "old-value"},
        {"name": "same-header", "value": "new-value"},
        {"name": "new-header", "value": "new-value"}
    ]));
    check(parent, child, expected);
}

#[test]
fn http_headers_everywhere() {
    headers_case(|h| {
        json!({"ignition": {"config": {"merge": [
            {"httpHeaders": h, "source": "http://example.com/myconf.ign"}]}, "version": ""}})
    });
    headers_case(|h| {
        json!({"ignition": {"config": {"replace":
            {"httpHeaders": h, "source": "http://example.com/myconf.ign"}}, "version": ""}})
    });
    headers_case(|h| {
        json!({"ignition": {"security": {"tls": {"certificateAuthorities": [
            {"httpHeaders": h, "source": "http://example.com/myca.cert"}]}}, "version": ""}})
    });
    headers_case(|h| {
        json!({"ignition": {"version": ""}, "storage": {"files": [
            {"path": "", "contents": {"httpHeaders": h, "source": "http://example.com/myfile.txt"}}]}})
    });
}

#[test]
fn filesystem_options_append_and_file_fields() {
    // merge_test.go: filesystem options/mountOptions are appended, not merged; file fields
    // are merged pointer by pointer; a parent directory stays when the child has a link
    // elsewhere.
    let parent = json!({"ignition": {"version": ""}, "storage": {
        "filesystems": [
            {"device": "/dev/sda", "options": ["a", "b"]},
            {"device": "/dev/sdb", "options": ["a", "b"]}
        ],
        "files": [
            {"path": "/a", "contents": {"source": "data:"}},
            {"path": "/b", "mode": 420},
            {"path": "/c", "contents": {"source": "data:"}}
        ],
        "directories": [{"path": "/d"}]
    }});
    let child = json!({"ignition": {"version": ""}, "storage": {
        "filesystems": [
            {"device": "/dev/sda", "mountOptions": ["c", "d"]},
            {"device": "/dev/sdb", "options": ["c", "d"]}
        ],
        "files": [
            {"path": "/a", "mode": 420},
            {"path": "/b", "contents": {"source": "data:"}},
            {"path": "/c", "contents": {"compression": "gzip"}}
        ],
        "links": [{"path": "/e"}]
    }});
    let expected = json!({"ignition": {"version": ""}, "storage": {
        "directories": [{"path": "/d"}],
        "files": [
            {"path": "/a", "contents": {"source": "data:"}, "mode": 420},
            {"path": "/b", "contents": {"source": "data:"}, "mode": 420},
            {"path": "/c", "contents": {"compression": "gzip", "source": "data:"}}
        ],
        "filesystems": [
            {"device": "/dev/sda", "mountOptions": ["c", "d"], "options": ["a", "b"]},
            {"device": "/dev/sdb", "options": ["a", "b", "c", "d"]}
        ],
        "links": [{"path": "/e"}]
    }});
    check(parent, child, expected);
}

#[test]
fn kernel_arguments_share_a_key_space() {
    // merge_test.go: child shouldNotExist "test" drops the parent's shouldExist "test".
    check(
        json!({"kernelArguments": {"shouldExist": ["foo", "bar baz", "test"], "shouldNotExist": ["brown fox"]}}),
        json!({"kernelArguments": {"shouldNotExist": ["test"]}}),
        json!({"ignition": {"version": ""}, "kernelArguments": {
            "shouldExist": ["foo", "bar baz"], "shouldNotExist": ["brown fox", "test"]}}),
    );
}

#[test]
fn units_and_dropins_by_name() {
    // Units keyed by name, dropins keyed by name inside them; pointer fields (contents,
    // enabled) come from the child when set, else the parent. Order: parent items first,
    // new child items appended.
    check(
        json!({"ignition": {"version": "3.3.0"}, "systemd": {"units": [
            {"name": "a.service", "contents": "[Service]\n", "enabled": true,
             "dropins": [{"name": "x.conf", "contents": "1"}]},
            {"name": "b.service", "mask": true}
        ]}}),
        json!({"ignition": {"version": "3.3.0"}, "systemd": {"units": [
            {"name": "c.service", "enabled": true},
            {"name": "a.service", "enabled": false,
             "dropins": [{"name": "y.conf", "contents": "2"}, {"name": "x.conf", "contents": "3"}]}
        ]}}),
        json!({"ignition": {"version": "3.3.0"}, "systemd": {"units": [
            {"contents": "[Service]\n", "dropins": [
                {"contents": "3", "name": "x.conf"}, {"contents": "2", "name": "y.conf"}],
             "enabled": false, "name": "a.service"},
            {"mask": true, "name": "b.service"},
            {"enabled": true, "name": "c.service"}
        ]}}),
    );
}

#[test]
fn users_groups_raid_luks() {
    // Users/groups/raid/luks keyed by name; raid and luks `options` appended; raid devices
    // (strings) merged by value; partitions without number merged by label.
    check(
        json!({"passwd": {"users": [{"name": "core", "groups": ["a"]}], "groups": [{"name": "g", "gid": 1}]},
               "storage": {"raid": [{"name": "md0", "level": "raid1", "devices": ["/dev/a"], "options": ["x"]}],
                           "luks": [{"name": "l", "device": "/dev/a", "options": ["o1"]}],
                           "disks": [{"device": "/dev/d", "partitions": [{"label": "p", "sizeMiB": 1}]}]}}),
        json!({"passwd": {"users": [{"name": "core", "groups": ["b", "a"], "shell": "/bin/sh"}], "groups": [{"name": "h"}]},
               "storage": {"raid": [{"name": "md0", "devices": ["/dev/b"], "options": ["y"]}],
                           "luks": [{"name": "l", "options": ["o2"], "wipeVolume": true}],
                           "disks": [{"device": "/dev/d", "partitions": [{"label": "p", "startMiB": 2}]}]}}),
        json!({"ignition": {"version": ""},
               "passwd": {"groups": [{"gid": 1, "name": "g"}, {"name": "h"}],
                          "users": [{"groups": ["a", "b"], "name": "core", "shell": "/bin/sh"}]},
               "storage": {"disks": [{"device": "/dev/d", "partitions": [{"label": "p", "sizeMiB": 1, "startMiB": 2}]}],
                           "luks": [{"device": "/dev/a", "name": "l", "options": ["o1", "o2"], "wipeVolume": true}],
                           "raid": [{"devices": ["/dev/a", "/dev/b"], "level": "raid1", "name": "md0", "options": ["x", "y"]}]}}),
    );
}

#[test]
fn struct_fields_merge_field_by_field() {
    // Non-zero structs on both sides merge field by field (ignition.timeouts, proxy); a
    // zero child struct keeps the parent's.
    check(
        json!({"ignition": {"version": "3.3.0", "timeouts": {"httpTotal": 10}, "proxy": {"httpProxy": "http://p", "noProxy": ["a"]}}}),
        json!({"ignition": {"version": "3.4.0", "timeouts": {"httpResponseHeaders": 5}, "proxy": {}}}),
        json!({"ignition": {"proxy": {"httpProxy": "http://p", "noProxy": ["a"]},
               "timeouts": {"httpResponseHeaders": 5, "httpTotal": 10}, "version": "3.4.0"}}),
    );
}

#[test]
fn output_keys_follow_ignition_order_and_translation_roundtrips() {
    // Merging a translated config with an empty child changes nothing but key order, which is
    // already Ignition's.
    let t = butane::translate(
        "variant: flatcar\nversion: 1.0.0\nsystemd:\n  units:\n    - name: a.service\n      mask: true\nstorage:\n  files:\n    - path: /x\n      contents:\n        inline: y\n",
        &butane::Options::default(),
    )
    .unwrap();
    let merged = merge(&t.config, &json!({"ignition": {"version": "3.3.0"}}));
    assert_eq!(
        butane::to_json(&merged, false),
        butane::to_json(&t.config, false)
    );
}

#[test]
fn kept_items_are_reordered_and_unknown_keys_dropped() {
    // The result is built field by field in Go struct order, so keys Ignition does not know
    // cannot survive and the order is Ignition's even for items taken whole from one side.
    let got = merge(
        &json!({"passwd": {"groups": [{"system": true, "name": "g", "bogus": 1}]}}),
        &json!({}),
    );
    assert_eq!(
        butane::to_json(&got, false),
        r#"{"ignition":{"version":""},"passwd":{"groups":[{"name":"g","system":true}]}}"#
    );
}
