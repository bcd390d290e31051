//! Execution cases transcribed from Go's `text/template/exec_test.go` (the `execTests`
//! table and the Test* functions named per case), adapted to JSON data: the Go test data is
//! a struct, here it is the JSON object below, so numbers are float64 and maps are
//! `map[string]interface{}`. Expected results follow Go's documented semantics for that
//! data; where the JSON adaptation changes Go's result (e.g. `printf "%d"` of a float64),
//! the case says so.

use gotmpl::{ExecOptions, MissingKey, Template, Value};
use serde_json::json;

fn data() -> serde_json::Value {
    json!({
        "True": true,
        "I": 17,
        "X": "x",
        "S": "xyz",
        "U": {"V": "v"},
        "SI": [3, 4, 5],
        "SIEmpty": [],
        "SB": [true, false],
        "MSI": {"one": 1, "two": 2, "three": 3},
        "MSIone": {"one": 1},
        "MSIEmpty": {},
        "SMSI": [{"one": 1, "two": 2}, {"eleven": 11, "twelve": 12}],
        "Empty0": null,
        "Empty3": [7, 8],
        "Empty4": {"V": "UinEmpty"},
        "F": 1.5,
        "Big": 1000000,
        "PS": "a string"
    })
}

enum Want {
    Out(&'static str),
    /// The error message must contain this text.
    Fails(&'static str),
}
use Want::*;

fn check(cases: &[(&str, &str, Want)], data: &serde_json::Value) {
    let mut failures = Vec::new();
    for (name, text, want) in cases {
        let got = Template::parse("t", text)
            .map_err(|e| e.to_string())
            .and_then(|t| t.execute(data).map_err(|e| e.to_string()));
        let ok = match (want, &got) {
            (Out(w), Ok(g)) => *w == g.as_str(),
            (Fails(w), Err(g)) => g.contains(w),
            _ => false,
        };
        if !ok {
            let want = match want {
                Out(w) => format!("output {w:?}"),
                Fails(w) => format!("error containing {w:?}"),
            };
            failures.push(format!("{name}: {text:?}\n   want {want}\n   got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn exec_tests_basics() {
    check(
        &[
            // execTests: "empty", "text", ".X", ".U.V", map access.
            ("empty", "", Out("")),
            ("text", "some text", Out("some text")),
            (".X", "-{{.X}}-", Out("-x-")),
            (".U.V", "-{{.U.V}}-", Out("-v-")),
            ("map .one", "{{.MSI.one}}", Out("1")),
            ("map .two", "{{.MSI.two}}", Out("2")),
            (
                "map .NO",
                "{{.MSI.NO}}",
                Fails("map has no entry for key \"NO\""),
            ),
            ("map .one interface", "{{.MSIone.one}}", Out("1")),
            (
                "map .WRONG args",
                "{{.MSI.one 1}}",
                Fails("one is not a method but has arguments"),
            ),
            (
                "map .WRONG type",
                "{{.MSI.one.x}}",
                Fails("can't evaluate field x in type interface {}"),
            ),
            // Dot of each kind.
            ("dot slice", "<{{.SI}}>", Out("<[3 4 5]>")),
            ("dot map", "<{{.MSIone}}>", Out("<map[one:1]>")),
            ("$ field", "{{$.I}}", Out("17")),
            ("$.U.V", "{{$.U.V}}", Out("v")),
            ("declare in action", "{{$x := $.U.V}}{{$x}}", Out("v")),
            ("simple assignment", "{{$x := 2}}{{$x = 3}}{{$x}}", Out("3")),
            (
                "nested assignment",
                "{{$x := 2}}{{if true}}{{$x = 3}}{{end}}{{$x}}",
                Out("3"),
            ),
            (
                "nested assignment changes the last declaration",
                "{{$x := 1}}{{if true}}{{$x := 2}}{{if true}}{{$x = 3}}{{end}}{{end}}{{$x}}",
                Out("1"),
            ),
            // Numbers print as Go's %v of float64.
            ("float", "{{.F}}", Out("1.5")),
            ("big float", "{{.Big}}", Out("1e+06")),
            ("int literal", "{{17}}", Out("17")),
            (
                "float literal",
                "{{1e6}} {{1.0}} {{0x10}} {{'a'}}",
                Out("1e+06 1 16 97"),
            ),
            // Missing values.
            ("nil value", "{{.Empty0}}", Out("<no value>")),
            (
                "field of nil",
                "{{.Empty0.X}}",
                Fails("nil pointer evaluating interface {}.X"),
            ),
            (
                "field of string",
                "{{.X.Y}}",
                Fails("can't evaluate field Y in type interface {}"),
            ),
            (
                "field of var",
                "{{$x := .X}}{{$x.Y}}",
                Fails("can't evaluate field Y in type string"),
            ),
            ("interface field", "{{.Empty4.V}}", Out("UinEmpty")),
            // Parenthesised: "parens: $ in paren".
            ("parens: $ in paren", "{{($).X}}", Out("x")),
            ("parens: field of pipe", "{{(.U).V}}", Out("v")),
        ],
        &data(),
    );
}

#[test]
fn exec_tests_if_with() {
    check(
        &[
            ("if true", "{{if true}}TRUE{{end}}", Out("TRUE")),
            (
                "if false",
                "{{if false}}TRUE{{else}}FALSE{{end}}",
                Out("FALSE"),
            ),
            (
                "if nil",
                "{{if nil}}TRUE{{end}}",
                Fails("nil is not a command"),
            ),
            (
                "if 1",
                "{{if 1}}NON-ZERO{{else}}ZERO{{end}}",
                Out("NON-ZERO"),
            ),
            ("if 0", "{{if 0}}NON-ZERO{{else}}ZERO{{end}}", Out("ZERO")),
            (
                "if 1.5",
                "{{if 1.5}}NON-ZERO{{else}}ZERO{{end}}",
                Out("NON-ZERO"),
            ),
            (
                "if missing key",
                "{{if .MSIEmpty.none}}x{{end}}",
                Fails("map has no entry for key \"none\""),
            ),
            (
                "if emptystring",
                "{{if ``}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "if string",
                "{{if `notempty`}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("NON-EMPTY"),
            ),
            (
                "if emptyslice",
                "{{if .SIEmpty}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "if slice",
                "{{if .SI}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("NON-EMPTY"),
            ),
            (
                "if emptymap",
                "{{if .MSIEmpty}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "if map",
                "{{if .MSI}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("NON-EMPTY"),
            ),
            (
                "if null",
                "{{if .Empty0}}NON-EMPTY{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "if $x with $y int",
                "{{if $x := true}}{{with $y := .I}}{{$x}},{{$y}}{{end}}{{end}}",
                Out("true,17"),
            ),
            (
                "if else if",
                "{{if false}}FALSE{{else if true}}TRUE{{end}}",
                Out("TRUE"),
            ),
            (
                "if else chain",
                "{{if eq 1 3}}1{{else if eq 2 3}}2{{else if eq 3 3}}3{{end}}",
                Out("3"),
            ),
            ("with true", "{{with true}}{{.}}{{end}}", Out("true")),
            (
                "with false",
                "{{with false}}{{.}}{{else}}FALSE{{end}}",
                Out("FALSE"),
            ),
            ("with 1", "{{with 1}}{{.}}{{else}}ZERO{{end}}", Out("1")),
            ("with 0", "{{with 0}}{{.}}{{else}}ZERO{{end}}", Out("ZERO")),
            (
                "with 1.5",
                "{{with 1.5}}{{.}}{{else}}ZERO{{end}}",
                Out("1.5"),
            ),
            (
                "with \"\"",
                "{{with \"\"}}{{.}}{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "with \"abc\"",
                "{{with \"abc\"}}{{.}}{{else}}EMPTY{{end}}",
                Out("abc"),
            ),
            (
                "with slice",
                "{{with .SI}}{{.}}{{else}}EMPTY{{end}}",
                Out("[3 4 5]"),
            ),
            (
                "with emptymap",
                "{{with .MSIEmpty}}{{.}}{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            ("with $x int", "{{with $x := .I}}{{$x}}{{end}}", Out("17")),
            (
                "with $x struct.U.V",
                "{{with $x := $}}{{$x.U.V}}{{end}}",
                Out("v"),
            ),
            (
                "with variable and action",
                "{{with $x := $}}{{$y := $.U.V}}{{$y}}{{end}}",
                Out("v"),
            ),
            (
                "with else with",
                "{{with 0}}{{.}}{{else with true}}{{.}}{{end}}",
                Out("true"),
            ),
            (
                "with else with chain",
                "{{with 0}}{{.}}{{else with false}}{{.}}{{else with `notempty`}}{{.}}{{end}}",
                Out("notempty"),
            ),
        ],
        &data(),
    );
}

#[test]
fn exec_tests_functions() {
    check(
        &[
            // print/printf/println.
            ("print", "{{print \"hello, print\"}}", Out("hello, print")),
            ("print 123", "{{print 1 2 3}}", Out("1 2 3")),
            ("print nil", "{{print nil}}", Out("<nil>")),
            ("print null field", "{{print .Empty0}}", Out("<nil>")),
            ("println", "{{println 1 2 3}}", Out("1 2 3\n")),
            ("printf int", "{{printf \"%04x\" 127}}", Out("007f")),
            ("printf float", "{{printf \"%g\" 3.5}}", Out("3.5")),
            ("printf string", "{{printf \"%s\" \"hello\"}}", Out("hello")),
            ("printf field", "{{printf \"%s\" .U.V}}", Out("v")),
            // Go's "printf dot" prints 17 for an int; JSON numbers are float64.
            (
                "printf dot float64",
                "{{with .I}}{{printf \"%d\" .}}{{end}}",
                Out("%!d(float64=17)"),
            ),
            (
                "printf %v float64",
                "{{printf \"%v|%.1f\" .I .F}}",
                Out("17|1.5"),
            ),
            ("printf pipeline", "{{.X | printf \"<%s>\"}}", Out("<x>")),
            ("printf format field", "{{printf .X}}", Out("x")),
            (
                "printf format float",
                "{{printf .F}}",
                Fails("wrong type for value; expected string; got float64"),
            ),
            (
                "printf format nil",
                "{{printf nil}}",
                Fails("cannot assign nil to string"),
            ),
            (
                "printf format number",
                "{{printf 3}}",
                Fails("expected string; found 3"),
            ),
            // html, js, urlquery.
            (
                "html",
                "{{html \"<script>alert(\\\"XSS\\\");</script>\"}}",
                Out("&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;"),
            ),
            (
                "html pipeline",
                "{{printf \"<script>alert(\\\"XSS\\\");</script>\" | html}}",
                Out("&lt;script&gt;alert(&#34;XSS&#34;);&lt;/script&gt;"),
            ),
            (
                "html untyped nil",
                "{{html .Empty0}}",
                Out("&lt;no value&gt;"),
            ),
            (
                "js",
                "{{js .PS}} {{js \"It'd be nice.\"}}",
                Out("a string It\\'d be nice."),
            ),
            (
                "urlquery",
                "{{\"http://www.example.org/\"|urlquery}}",
                Out("http%3A%2F%2Fwww.example.org%2F"),
            ),
            // Booleans.
            ("not", "{{not true}} {{not false}}", Out("false true")),
            (
                "and",
                "{{and false 0}} {{and 1 0}} {{and 0 true}} {{and 1 1}}",
                Out("false 0 0 1"),
            ),
            (
                "or",
                "{{or 0 0}} {{or 1 0}} {{or 0 true}} {{or 1 1}}",
                Out("0 1 true 1"),
            ),
            // "or short-circuit" / "and short-circuit": later arguments are not evaluated,
            // so a missing key after the deciding operand is no error.
            ("or short-circuit", "{{or 0 1 .Unknown}}", Out("1")),
            ("and short-circuit", "{{and 1 0 .Unknown}}", Out("0")),
            ("and pipe-true", "{{1 | and 1}}", Out("1")),
            ("and pipe-false", "{{0 | and 1}}", Out("0")),
            ("or pipe-true", "{{1 | or 0}}", Out("1")),
            ("or pipe-false", "{{0 | or 0}}", Out("0")),
            (
                "and undef",
                "{{and 1 .Unknown}}",
                Fails("map has no entry for key \"Unknown\""),
            ),
            (
                "boolean if",
                "{{if and true 1 `hi`}}TRUE{{else}}FALSE{{end}}",
                Out("TRUE"),
            ),
            (
                "boolean if not",
                "{{if and true 1 `hi` | not}}TRUE{{else}}FALSE{{end}}",
                Out("FALSE"),
            ),
            (
                "boolean if pipe",
                "{{if true | not | and 1}}TRUE{{else}}FALSE{{end}}",
                Out("FALSE"),
            ),
            (
                "or as if true",
                "{{or .SI \"slice is empty\"}}",
                Out("[3 4 5]"),
            ),
            (
                "or as if false",
                "{{or .SIEmpty \"slice is empty\"}}",
                Out("slice is empty"),
            ),
            (
                "and as if true",
                "{{and .SI \"slice is not empty\"}}",
                Out("slice is not empty"),
            ),
            (
                "and as if false",
                "{{and .SIEmpty \"slice is not empty\"}}",
                Out("[]"),
            ),
            // index.
            ("slice[0]", "{{index .SI 0}}", Out("3")),
            ("slice[1]", "{{index .SI 1}}", Out("4")),
            (
                "slice[HUGE]",
                "{{index .SI 10}}",
                Fails("error calling index: index out of range: 10"),
            ),
            (
                "slice[len]",
                "{{index .SI 3}}",
                Fails("error calling index: reflect: slice index out of range"),
            ),
            (
                "slice[WRONG]",
                "{{index .SI `hello`}}",
                Fails("cannot index slice/array with type string"),
            ),
            (
                "slice[nil]",
                "{{index .SI nil}}",
                Fails("cannot index slice/array with nil"),
            ),
            (
                "slice[float64]",
                "{{index .SI .I}}",
                Fails("cannot index slice/array with type float64"),
            ),
            ("map[one]", "{{index .MSI `one`}}", Out("1")),
            ("map[two]", "{{index .MSI `two`}}", Out("2")),
            ("map[NO]", "{{index .MSI `XXX`}}", Out("<no value>")),
            (
                "map[nil]",
                "{{index .MSI nil}}",
                Fails("value is nil; should be of type string"),
            ),
            ("map[``]", "{{index .MSI ``}}", Out("<no value>")),
            (
                "map[WRONG]",
                "{{index .MSI 10}}",
                Fails("value has type int; should be string"),
            ),
            ("double index", "{{index .SMSI 1 `eleven`}}", Out("11")),
            ("nil[1]", "{{index nil 1}}", Fails("index of untyped nil")),
            ("string[1]", "{{index .S 1}}", Out("121")),
            (
                "index of null",
                "{{index .Empty0 1}}",
                Fails("index of untyped nil"),
            ),
            (
                "index of float",
                "{{index .F 1}}",
                Fails("can't index item of type float64"),
            ),
            (
                "index no args",
                "{{index}}",
                Fails("wrong number of args for index: want at least 1 got 0"),
            ),
            // slice.
            ("slice[:]", "{{slice .SI}}", Out("[3 4 5]")),
            ("slice[1:]", "{{slice .SI 1}}", Out("[4 5]")),
            ("slice[1:2]", "{{slice .SI 1 2}}", Out("[4]")),
            (
                "slice[-1:]",
                "{{slice .SI -1}}",
                Fails("index out of range: -1"),
            ),
            (
                "slice[2:1]",
                "{{slice .SI 2 1}}",
                Fails("invalid slice index: 2 > 1"),
            ),
            ("slice[1:2:3]", "{{slice .SI 1 2 3}}", Out("[4]")),
            ("string[:]", "{{slice .S}}", Out("xyz")),
            ("string[0:1]", "{{slice .S 0 1}}", Out("x")),
            ("string[1:]", "{{slice .S 1}}", Out("yz")),
            ("string[1:2]", "{{slice .S 1 2}}", Out("y")),
            ("string[1:1]", "{{slice .S 1 1}}", Out("")),
            (
                "string[1:2:3]",
                "{{slice .S 1 2 3}}",
                Fails("cannot 3-index slice a string"),
            ),
            (
                "slice too many",
                "{{slice .S 1 2 3 4}}",
                Fails("too many slice indexes: 4"),
            ),
            (
                "slice of map",
                "{{slice .MSI}}",
                Fails("can't slice item of type map[string]interface {}"),
            ),
            // len.
            ("len slice", "{{len .SI}}", Out("3")),
            ("len map", "{{len .MSI }}", Out("3")),
            ("len string", "{{len .S}}", Out("3")),
            (
                "len of int",
                "{{len 3}}",
                Fails("error calling len: len of type int"),
            ),
            (
                "len of nothing",
                "{{len .Empty0}}",
                Fails("error calling len: len of nil pointer"),
            ),
            ("len of an interface field", "{{len .Empty3}}", Out("2")),
            ("len of float", "{{len .F}}", Fails("len of type float64")),
            (
                "len args",
                "{{len 1 2}}",
                Fails("wrong number of args for len: want 1 got 2"),
            ),
            // call: JSON data holds no functions.
            (
                "call",
                "{{call .X}}",
                Fails("error calling call: non-function .X of type string"),
            ),
            (
                "call nil",
                "{{call .Empty0}}",
                Fails("error calling call: call of nil"),
            ),
        ],
        &data(),
    );
}

#[test]
fn exec_tests_range() {
    check(
        &[
            (
                "range []int",
                "{{range .SI}}-{{.}}-{{end}}",
                Out("-3--4--5-"),
            ),
            (
                "range empty no else",
                "{{range .SIEmpty}}-{{.}}-{{end}}",
                Out(""),
            ),
            (
                "range []int else",
                "{{range .SI}}-{{.}}-{{else}}EMPTY{{end}}",
                Out("-3--4--5-"),
            ),
            (
                "range empty else",
                "{{range .SIEmpty}}-{{.}}-{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "range []bool",
                "{{range .SB}}-{{.}}-{{end}}",
                Out("-true--false-"),
            ),
            (
                "range map",
                "{{range .MSI}}-{{.}}-{{end}}",
                Out("-1--3--2-"),
            ),
            (
                "range empty map no else",
                "{{range .MSIEmpty}}-{{.}}-{{end}}",
                Out(""),
            ),
            (
                "range map else",
                "{{range .MSI}}-{{.}}-{{else}}EMPTY{{end}}",
                Out("-1--3--2-"),
            ),
            (
                "range empty map else",
                "{{range .MSIEmpty}}-{{.}}-{{else}}EMPTY{{end}}",
                Out("EMPTY"),
            ),
            (
                "range empty interface",
                "{{range .Empty3}}-{{.}}-{{else}}EMPTY{{end}}",
                Out("-7--8-"),
            ),
            (
                "range empty nil",
                "{{range .Empty0}}-{{.}}-{{end}}",
                Out(""),
            ),
            (
                "range $x SI",
                "{{range $x := .SI}}<{{$x}}>{{end}}",
                Out("<3><4><5>"),
            ),
            (
                "range $x $y SI",
                "{{range $x, $y := .SI}}<{{$x}}={{$y}}>{{end}}",
                Out("<0=3><1=4><2=5>"),
            ),
            (
                "range $x MSIone",
                "{{range $x := .MSIone}}<{{$x}}>{{end}}",
                Out("<1>"),
            ),
            (
                "range $x $y MSIone",
                "{{range $x, $y := .MSIone}}<{{$x}}={{$y}}>{{end}}",
                Out("<one=1>"),
            ),
            (
                "declare in range",
                "{{range $x := .SI}}<{{$foo:=$x}}{{$x}}>{{end}}",
                Out("<3><4><5>"),
            ),
            ("range 5", "{{range $i := 5}}{{$i}}{{end}}", Out("01234")),
            (
                "range 0 else",
                "{{range 0}}x{{else}}none{{end}}",
                Out("none"),
            ),
            (
                "range 5 two vars",
                "{{range $i, $x := 5}}{{end}}",
                Fails("can't use 5 to iterate over more than one variable"),
            ),
            (
                "range quick break",
                "{{range .SI}}{{break}}{{.}}{{end}}",
                Out(""),
            ),
            (
                "range break after two",
                "{{range $i, $x := .SI}}{{if ge $i 2}}{{break}}{{end}}{{.}}{{end}}",
                Out("34"),
            ),
            (
                "range continue",
                "{{range .SI}}{{continue}}{{.}}{{end}}",
                Out(""),
            ),
            // Go's case compares with `eq . 3`; with float64 data the literal must be a float.
            (
                "range continue condition",
                "{{range .SI}}{{if eq . 3.0 }}{{continue}}{{end}}{{.}}{{end}}",
                Out("45"),
            ),
            (
                "range string",
                "{{range .S}}{{.}}{{end}}",
                Fails("range can't iterate over xyz"),
            ),
            (
                "range float",
                "{{range .F}}{{.}}{{end}}",
                Fails("range can't iterate over 1.5"),
            ),
            (
                "range assign",
                "{{$i := 0}}{{$e := 0}}{{range $i, $e = .SI}}{{end}}{{$i}}{{$e}}",
                Out("25"),
            ),
            (
                "range element field",
                "{{range .SMSI}}{{.one}}{{end}}",
                Fails("map has no entry for key \"one\""),
            ),
            (
                "range element typ",
                "{{range .SI}}{{.x}}{{end}}",
                Fails("can't evaluate field x in type interface {}"),
            ),
        ],
        &data(),
    );
}

#[test]
fn comparisons() {
    // Mirrors TestComparison and the comparison error cases of exec_test.go.
    check(
        &[
            ("eq ints", "{{eq 1 1}} {{eq 1 2}}", Out("true false")),
            (
                "eq strings",
                "{{eq \"xy\" \"xy\"}} {{eq .X \"x\"}}",
                Out("true true"),
            ),
            (
                "eq floats",
                "{{eq 1.5 1.5}} {{eq .F 1.5}} {{eq .I .I}}",
                Out("true true true"),
            ),
            (
                "eq bools",
                "{{eq true true}} {{eq .True false}}",
                Out("true false"),
            ),
            (
                "eq multi",
                "{{eq 2 1 3 2}} {{eq 2 1 3 4}}",
                Out("true false"),
            ),
            (
                "eq multi strings",
                "{{eq \"a\" \"b\" \"c\" \"a\"}}",
                Out("true"),
            ),
            (
                "eq float64 and int",
                "{{eq .I 17}}",
                Fails("error calling eq: incompatible types for comparison: float64 and int"),
            ),
            (
                "eq int and string",
                "{{eq 1 \"a\"}}",
                Fails("incompatible types for comparison: int and string"),
            ),
            ("eq nil nil", "{{eq nil nil}}", Out("true")),
            ("eq null string", "{{eq .Empty0 \"x\"}}", Out("false")),
            // Go formats the operand with %s, so float64 elements print as bad verbs.
            (
                "eq slice",
                "{{eq .SI .SI}}",
                Fails(
                    "non-comparable type [%!s(float64=3) %!s(float64=4) %!s(float64=5)]: []interface {}",
                ),
            ),
            (
                "eq missing arg",
                "{{eq 1}}",
                Fails("missing argument for comparison"),
            ),
            ("ne", "{{ne 1 2}} {{ne \"a\" \"a\"}}", Out("true false")),
            (
                "lt",
                "{{lt 1 2}} {{lt 2 1}} {{lt \"a\" \"b\"}} {{lt 1.5 2.5}}",
                Out("true false true true"),
            ),
            ("le", "{{le 2 2}} {{le 3 2}}", Out("true false")),
            ("gt", "{{gt 3 2}} {{gt 2 2}}", Out("true false")),
            ("ge", "{{ge 1 2}} {{ge 2 2}}", Out("false true")),
            (
                "lt bool",
                "{{lt true false}}",
                Fails("error calling lt: invalid type for comparison"),
            ),
            (
                "lt nil",
                "{{lt nil 1}}",
                Fails("invalid type for comparison"),
            ),
            (
                "lt mixed",
                "{{lt .I 2}}",
                Fails("incompatible types for comparison: float64 and int"),
            ),
            ("lt byte int", "{{lt (index .S 0) 200}}", Out("true")),
            (
                "ne args",
                "{{ne 1}}",
                Fails("wrong number of args for ne: want 2 got 1"),
            ),
        ],
        &data(),
    );
}

#[test]
fn fixed_bugs_and_errors() {
    check(
        &[
            // execTests "bug7a".."bug7c".
            (
                "bug7a",
                "{{3 2}}",
                Fails("can't give argument to non-function 3"),
            ),
            (
                "bug7b",
                "{{$x := 1}}{{$x 2}}",
                Fails("can't give argument to non-function $x"),
            ),
            (
                "bug7c",
                "{{$x := 1}}{{3 | $x}}",
                Fails("can't give argument to non-function $x"),
            ),
            ("bug10", "{{.X | printf \"%q\"}}", Out("\"x\"")),
            ("nil command", "{{nil}}", Fails("nil is not a command")),
            (
                "explicit nil chain",
                "{{(nil).X}}",
                Fails("nil is not a command"),
            ),
            (
                "function chain",
                "{{(len .SI).X}}",
                Fails("can't evaluate field X in type int"),
            ),
            (
                "overflow",
                "{{18446744073709551615}}",
                Fails("18446744073709551615 overflows int"),
            ),
        ],
        &data(),
    );
}

#[test]
fn whitespace_trimming() {
    // Mirrors the trim cases of parse_test.go and TestTrim... in exec_test.go.
    check(
        &[
            ("trim left", "a \n\t {{- 1}}", Out("a1")),
            ("trim right", "{{1 -}} \n\t b", Out("1b")),
            ("trim both", "a {{- 1 -}} b", Out("a1b")),
            ("trim comment", "a {{- /* c */ -}} b", Out("ab")),
            ("no trim without space", "{{-3}}", Out("-3")),
            ("comment", "a{{/* hello */}}b", Out("ab")),
            ("newline in action", "{{if\n.True\n}}y{{end}}", Out("y")),
        ],
        &data(),
    );
}

#[test]
fn templates_and_blocks() {
    // Mirrors TestTemplateDefs/TestBlock style cases (multi_test.go, exec_test.go).
    check(
        &[
            (
                "define and call",
                "{{define \"a\"}}<{{.}}>{{end}}{{template \"a\" .X}}",
                Out("<x>"),
            ),
            (
                "call without data",
                "{{define \"a\"}}{{.}}{{end}}{{template \"a\"}}",
                Out("<no value>"),
            ),
            (
                "no dynamic scoping",
                "{{define \"a\"}}{{$}}{{end}}{{$x := 1}}{{template \"a\" .X}}",
                Out("x"),
            ),
            (
                "block default",
                "a{{block \"b\" .U}}[{{.V}}]{{end}}c",
                Out("a[v]c"),
            ),
            (
                "undefined template",
                "{{template \"nope\"}}",
                Fails(
                    "template: t:1:11: executing \"t\" at <{{template \"nope\"}}>: template \"nope\" not defined",
                ),
            ),
            (
                "error inside template names it",
                "{{define \"a\"}}{{.nope}}{{end}}{{template \"a\" .}}",
                Fails(
                    "template: t:1:16: executing \"a\" at <.nope>: map has no entry for key \"nope\"",
                ),
            ),
            (
                "recursion is bounded",
                "{{define \"r\"}}{{template \"r\" .}}{{end}}{{template \"r\" .}}",
                Fails("exceeded maximum template depth (100)"),
            ),
        ],
        &data(),
    );
}

#[test]
fn error_messages_have_go_format() {
    // The full message format of exec.go's state.errorf with ErrorContext.
    let cases = [
        (
            "{{.x}}",
            "template: t:1:2: executing \"t\" at <.x>: map has no entry for key \"x\"",
        ),
        (
            "a\n  {{.U.nope}}",
            "template: t:2:6: executing \"t\" at <.U.nope>: map has no entry for key \"nope\"",
        ),
        (
            "{{index .SI 9}}",
            "template: t:1:2: executing \"t\" at <index .SI 9>: error calling index: index out of range: 9",
        ),
        (
            "{{if eq .I 1}}{{end}}",
            "template: t:1:5: executing \"t\" at <eq .I 1>: error calling eq: incompatible types for comparison: float64 and int",
        ),
        (
            "{{range .F}}{{end}}",
            "template: t:1:8: executing \"t\" at <.F>: range can't iterate over 1.5",
        ),
    ];
    for (text, want) in cases {
        let t = Template::parse("t", text).unwrap();
        let err = t.execute(&data()).unwrap_err();
        assert_eq!(err.to_string(), want, "template {text:?}");
    }
}

#[test]
fn execute_named_templates() {
    // Mirrors ExecuteTemplate in multi_test.go.
    let t = Template::parse("main", "{{define \"a\"}}A{{.}}{{end}}M").unwrap();
    assert_eq!(t.template_names(), vec!["a", "main"]);
    let d: Value = json!("x").into();
    let o = ExecOptions::default();
    assert_eq!(t.execute_named("a", &d, &o).unwrap(), "Ax");
    assert_eq!(t.execute_value(&d, &o).unwrap(), "M");
    assert_eq!(
        t.execute_named("nope", &d, &o).unwrap_err().to_string(),
        "template: no template \"nope\" associated with template \"main\""
    );
}

#[test]
fn missing_key_options() {
    // Mirrors TestMissingMapKey.
    let d: Value = json!({"x": 99}).into();
    let t = Template::parse("t", "{{.x}} {{.missing}}").unwrap();
    let run = |mk| {
        t.execute_value(
            &d,
            &ExecOptions {
                missing_key: mk,
                ..ExecOptions::default()
            },
        )
    };
    assert_eq!(run(MissingKey::Default).unwrap(), "99 <no value>");
    // The zero value of interface{} is nil, which prints as <no value>.
    assert_eq!(run(MissingKey::Zero).unwrap(), "99 <no value>");
    let err = run(MissingKey::Error).unwrap_err();
    assert!(err.is_missing_key());
    assert_eq!(err.message(), "map has no entry for key \"missing\"");
    // Field access on nil data.
    let t = Template::parse("t", "{{.x}}").unwrap();
    assert_eq!(
        t.execute(&serde_json::Value::Null).unwrap_err().message(),
        "nil data; no entry for key \"x\""
    );
}
