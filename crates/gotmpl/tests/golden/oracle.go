// Command oracle runs template cases through Go's text/template, as matchbox does
// (Option("missingkey=error"), data decoded by encoding/json), and records the results.
//
// It reads {"data": DEFAULT, "cases": [{"name","template"[,"data"][,"query"]}...]} on stdin
// and writes the same document with each case's "output" or "error" filled in. A case
// without "data" uses DEFAULT. "query", if present, becomes data["request"]["query"] as a
// map[string]string, like matchbox's request labels.
//
//	go run oracle.go < cases.in.json > cases.json
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"text/template"
)

type Case struct {
	Name     string            `json:"name"`
	Template string            `json:"template"`
	Data     json.RawMessage   `json:"data"`
	Query    map[string]string `json:"query,omitempty"`
	Output   *string           `json:"output,omitempty"`
	Error    *string           `json:"error,omitempty"`
}

type File struct {
	GoVersion string          `json:"go_version,omitempty"`
	Data      json.RawMessage `json:"data"`
	Cases     []Case          `json:"cases"`
}

func run(c *Case, def json.RawMessage) {
	raw := c.Data
	if len(raw) == 0 {
		raw = def
	}
	var data interface{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &data); err != nil {
			panic(err)
		}
	}
	if c.Query != nil {
		m, ok := data.(map[string]interface{})
		if !ok {
			m = map[string]interface{}{}
			data = m
		}
		m["request"] = map[string]interface{}{"query": c.Query, "raw_query": ""}
	}
	t, err := template.New("t").Option("missingkey=error").Parse(c.Template)
	if err != nil {
		s := err.Error()
		c.Error = &s
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		s := err.Error()
		c.Error = &s
		return
	}
	s := buf.String()
	c.Output = &s
}

func main() {
	var f File
	if err := json.NewDecoder(os.Stdin).Decode(&f); err != nil {
		panic(err)
	}
	for i := range f.Cases {
		f.Cases[i].Output, f.Cases[i].Error = nil, nil
		run(&f.Cases[i], f.Data)
	}
	f.GoVersion = runtime.Version()
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		panic(err)
	}
}
