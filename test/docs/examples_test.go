package docs

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestExamplesRunAsDocumented runs every marked example of docs/*.md
// (see the package comment): each config block must load in the real
// sidecar, and each run block must print what the page shows.
func TestExamplesRunAsDocumented(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	type page struct {
		name    string
		configs []block
		runs    map[string][]block
	}
	var all []page
	be := &backends{t: t}
	for _, path := range pages {
		p := page{name: filepath.Base(path), runs: map[string][]block{}}
		for _, b := range blocks(t, path) {
			b.file = "docs/" + p.name
			switch b.kind {
			case "config":
				if b.lang != "json" {
					t.Errorf("%s: a config block is ```json, not %q", b.where(), b.lang)
				}
				p.configs = append(p.configs, b)
				be.users = append(be.users, usernames([]byte(b.body))...)
			case "run":
				if b.lang != "console" {
					t.Errorf("%s: a run block is ```console, not %q", b.where(), b.lang)
				}
				p.runs[b.name] = append(p.runs[b.name], b)
			}
		}
		if len(p.configs) > 0 || len(p.runs) > 0 {
			all = append(all, p)
		}
	}
	slices.Sort(be.users)
	be.users = slices.Compact(be.users)

	// The pages the issue names must stay covered.
	for _, must := range []string{"sidecar-config.md", "caching.md", "sessions.md"} {
		if !slices.ContainsFunc(all, func(p page) bool { return p.name == must && len(p.runs) > 0 }) {
			t.Errorf("docs/%s has no runnable example (docs-test: run)", must)
		}
	}

	for _, p := range all {
		t.Run(p.name, func(t *testing.T) {
			names := map[string]bool{}
			for _, c := range p.configs {
				if names[c.name] {
					t.Errorf("%s: a second config named %q", c.where(), c.name)
				}
				names[c.name] = true
			}
			for name, runs := range p.runs {
				if !names[name] && name != "absent" {
					t.Errorf("%s: no config block named %q on this page", runs[0].where(), name)
				}
			}
			targets := append([]block{}, p.configs...)
			if _, ok := p.runs["absent"]; ok {
				targets = append(targets, block{name: "absent", file: "docs/" + p.name})
			}
			for _, c := range targets {
				t.Run(c.name, func(t *testing.T) {
					var doc []byte
					var env []string
					if c.name != "absent" {
						doc, env = be.localize(t, []byte(c.body))
					}
					be.flush()
					s := startSidecar(t, doc, env, c.args["labels"])
					var ss []step
					for _, r := range p.runs[c.name] {
						for _, st := range steps(r) {
							if st.command == "" {
								t.Errorf("%s: output before the first command", st.where)
								continue
							}
							ss = append(ss, st)
						}
					}
					if len(ss) == 0 {
						return
					}
					outputs := runSteps(t, s, ss)
					for i, st := range ss {
						got := strings.Split(outputs[i], "\n")
						if !matchLines(st.want, got) {
							t.Errorf("%s: $ %s\nthe page shows:\n%s\nthe command printed:\n%s", st.where, st.command,
								strings.Join(st.want, "\n"), outputs[i])
						}
					}
				})
			}
		})
	}
}
