package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ssebridge/ssebridge/sinks"
)

// Load reads, expands, decodes, defaults and validates the file at path.
// A file that cannot be read gives the os error, wrapped; a wrong file gives
// Errors (errors.Is(err, ErrInvalid)) listing every problem at once.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse is Load for bytes already in memory; file is used in error messages
// only.
//
// ${VAR} and ${VAR:-default} are expanded from the environment inside scalar
// values of the parsed document, never in the raw text: line numbers stay
// true and a variable's value cannot add keys or change the document's
// structure. $$ is a literal dollar.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, os.LookupEnv)
}

func parse(file string, data []byte, lookup func(string) (string, bool)) (*Config, error) {
	d := &decoder{
		file:     file,
		lookup:   lookup,
		lines:    map[string]int{},
		expanded: map[*yaml.Node]bool{},
		envVals:  map[string]string{},
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, Errors{syntaxError(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		// A second document would be ignored silently: refuse it.
		line := extra.Line
		if err != nil {
			return nil, Errors{syntaxError(file, data, err)}
		}
		return nil, Errors{{File: file, Line: max(line, 1), Key: "yaml", Msg: "a configuration is one YAML document; remove the --- separated ones after the first"}}
	}
	cfg := &Config{}
	d.lines[""] = 1 // an empty file's problems are still located
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		d.lines[""] = root.Line
		if !d.check(root, reflect.TypeFor[Config](), "") || d.visits >= maxVisits {
			return nil, d.errs
		}
		if err := root.Decode(cfg); err != nil {
			// check left only values the decoder accepts; reaching this is a
			// bug here, but the user still deserves a located message.
			msg := strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", " ")
			d.errs = append(d.errs, &Error{File: file, Line: root.Line, Key: "yaml", Msg: msg})
			return nil, d.errs
		}
	}
	cfg.File = file
	cfg.lines = d.lines
	cfg.SetDefaults()

	errs := d.errs
	if err := cfg.Validate(); err != nil {
		var verrs Errors
		errors.As(err, &verrs)
	next:
		for _, e := range verrs {
			if d.covered(e.Key) {
				continue
			}
			for _, c := range e.causes {
				if d.covered(c) {
					continue next
				}
			}
			// Validation sees only the decoded values: hide the ones
			// that came from the environment, as decoding does.
			if v := d.envVals[e.Key]; v != "" {
				e.Msg = strings.ReplaceAll(e.Msg, strconv.Quote(v), "the value from the environment")
			}
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return nil, errs
	}
	return cfg, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserErrors are the yaml.v3 messages raised by its parser rather than
// its scanner: for those it reports a 0-based line (the scanner's are
// 1-based), so they need one added.
var parserErrors = []string{
	"did not find expected key",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected <document start>",
}

// syntaxError turns yaml.v3's "yaml: line N: msg" into an Error at line N.
func syntaxError(file string, data []byte, err error) *Error {
	e := &Error{File: file, Line: 1, Key: "yaml", Msg: err.Error()}
	m := yamlLineRE.FindStringSubmatch(err.Error())
	if m == nil {
		e.Msg = strings.TrimPrefix(e.Msg, "yaml: ")
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Msg = m[2]
	for _, p := range parserErrors {
		if strings.HasPrefix(e.Msg, p) {
			e.Line++
			break
		}
	}
	// An error at the end of the input points past the last line.
	last := bytes.Count(bytes.TrimRight(data, "\n"), []byte("\n")) + 1
	e.Line = max(1, min(e.Line, last))
	return e
}

// decoder checks a yaml.Node tree against the Config types before the real
// decode, because yaml.v3 neither names keys in its errors nor rejects
// unknown keys when decoding a Node. Values it rejects are replaced by null
// so that the real decode succeeds and validation can still look at the rest.
type decoder struct {
	file     string
	lookup   func(string) (string, bool)
	errs     Errors
	lines    map[string]int
	expanded map[*yaml.Node]bool
	// envVals maps the key of every value expanded from the environment
	// to that value, so validation messages can leave it out.
	envVals map[string]string
	// visits counts checked nodes: aliases can make a small file a huge
	// tree, and a configuration never needs more than a few thousand.
	visits int
	// bad holds keys already reported; validation's "required" and similar
	// complaints about them (or below them) would only repeat the problem.
	bad []string
}

func (d *decoder) errorf(line int, key, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
	d.bad = append(d.bad, key)
}

func (d *decoder) covered(key string) bool {
	for _, b := range d.bad {
		if key == b || strings.HasPrefix(key, b+".") || strings.HasPrefix(key, b+"[") {
			return true
		}
	}
	return false
}

// maxVisits bounds the values a document may expand to.
const maxVisits = 100_000

var (
	durationType   = reflect.TypeFor[Duration]()
	goDurationType = reflect.TypeFor[time.Duration]()
	sinkType       = reflect.TypeFor[Sink]()
	nullNode       = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
)

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return "a single value"
}

// check validates n against t and reports problems under key. It returns
// false when the caller must replace n by null.
func (d *decoder) check(n *yaml.Node, t reflect.Type, key string) bool {
	if d.visits++; d.visits == maxVisits {
		d.errorf(n.Line, key, "the document is too large (more than %d values, counting aliases)", maxVisits)
	}
	if d.visits >= maxVisits {
		return false
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.errorf(n.Line, key, "unknown alias")
			return false
		}
		n = n.Alias
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isNull(n) {
		return true
	}
	switch t {
	case durationType, goDurationType:
		return d.checkDuration(n, key)
	case sinkType:
		return d.checkSink(n, key)
	}
	switch t.Kind() {
	case reflect.Struct:
		return d.checkStruct(n, t, key)
	case reflect.Slice:
		return d.checkSlice(n, t, key)
	case reflect.Map:
		return d.checkMap(n, t, key)
	case reflect.String:
		if !d.scalar(n, key, "a string") {
			return false
		}
		if !d.expand(n, key) {
			return false
		}
		if d.expanded[n] {
			// Whatever the variable held is text, never null or a number.
			n.Tag, n.Style = "!!str", 0
		}
		return true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return d.checkNumber(n, t, key, "an integer")
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return d.checkNumber(n, t, key, "a non-negative integer")
	case reflect.Float32, reflect.Float64:
		return d.checkNumber(n, t, key, "a number")
	case reflect.Bool:
		return d.checkNumber(n, t, key, "true or false")
	case reflect.Interface:
		return true // free-form: whatever the YAML says
	}
	d.errorf(n.Line, key, "internal error: cannot check %s", t)
	return false
}

func (d *decoder) scalar(n *yaml.Node, key, want string) bool {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n.Line, key, "must be %s, not %s", want, kindName(n))
		return false
	}
	return true
}

// expand applies environment expansion to the scalar n once (an anchored
// node may be reached through several aliases).
func (d *decoder) expand(n *yaml.Node, key string) bool {
	if changed, done := d.expanded[n]; done {
		if changed {
			d.envVals[key] = n.Value // the same value under another alias
		}
		return true
	}
	v, changed, err := expand(n.Value, d.lookup)
	if err != nil {
		d.errorf(n.Line, key, "%v", err)
		return false
	}
	d.expanded[n] = changed
	if changed {
		n.Value = v
		d.envVals[key] = v
	}
	return true
}

// shown is how a message quotes a value: literally when it was written in
// the file, not at all when it came from the environment.
func (d *decoder) shown(n *yaml.Node) string {
	if d.expanded[n] {
		return "the value from the environment"
	}
	return strconv.Quote(n.Value)
}

func (d *decoder) checkDuration(n *yaml.Node, key string) bool {
	if !d.scalar(n, key, "a duration like 90s or 1m30s") || !d.expand(n, key) {
		return false
	}
	if d.expanded[n] && n.Value == "" {
		n.Tag, n.Style = "!!null", 0
		return true
	}
	if _, err := time.ParseDuration(n.Value); err != nil {
		d.errorf(n.Line, key, "must be a duration like 90s or 1m30s, got %s", d.shown(n))
		return false
	}
	return true
}

func (d *decoder) checkNumber(n *yaml.Node, t reflect.Type, key, want string) bool {
	if !d.scalar(n, key, want) || !d.expand(n, key) {
		return false
	}
	if d.expanded[n] {
		// Let "${PORT}" become an integer: resolve the expanded text as an
		// unquoted scalar. It stays a single scalar whatever it contains.
		n.Tag, n.Style = "", 0
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		d.errorf(n.Line, key, "must be %s, got %s", want, d.shown(n))
		return false
	}
	return true
}

func (d *decoder) checkSlice(n *yaml.Node, t reflect.Type, key string) bool {
	if n.Kind == yaml.ScalarNode && t.Elem().Kind() == reflect.String {
		// A single value stands for a comma-separated list, which is what an
		// environment variable can carry: brokers: ${KAFKA_BROKERS}.
		if !d.expand(n, key) {
			return false
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: n.Line, Column: n.Column}
		for _, part := range strings.Split(n.Value, ",") {
			if part = strings.TrimSpace(part); part != "" {
				seq.Content = append(seq.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: part, Line: n.Line, Column: n.Column})
			}
		}
		// The new items are already expanded: do not expand them again.
		for _, item := range seq.Content {
			d.expanded[item] = d.expanded[n]
		}
		for i, item := range seq.Content {
			d.lines[fmt.Sprintf("%s[%d]", key, i)] = item.Line
			if d.expanded[n] {
				d.envVals[fmt.Sprintf("%s[%d]", key, i)] = item.Value
			}
		}
		*n = *seq
		return true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, key, "must be a list, not %s", kindName(n))
		return false
	}
	for i, item := range n.Content {
		k := fmt.Sprintf("%s[%d]", key, i)
		d.lines[k] = item.Line
		target := item
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			target = item.Alias
		}
		if isNull(target) {
			d.errorf(item.Line, k, "empty list item (a '-' with nothing after it)")
			n.Content[i] = placeholder(t.Elem())
			continue
		}
		if !d.check(item, t.Elem(), k) {
			n.Content[i] = placeholder(t.Elem())
		}
	}
	return true
}

// placeholder stands for a rejected list item of type t. yaml.v3 drops a
// null item from a list of structs or strings, which would move every
// later item up one index, so that its problems would be reported under
// the wrong index and line (or hidden as following from this one).
func placeholder(t reflect.Type) *yaml.Node {
	switch t.Kind() {
	case reflect.Struct:
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	case reflect.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str"}
	}
	return nullNode
}

func (d *decoder) checkMap(n *yaml.Node, t reflect.Type, key string) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, key, "must be a mapping, not %s", kindName(n))
		return false
	}
	seen := map[string]int{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, key, "keys must be plain names, not %s", kindName(k))
			continue
		}
		sub := key + "." + k.Value
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, sub, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[sub] = k.Line
		if !d.check(v, t.Elem(), sub) {
			v = nullNode
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
	return true
}

func (d *decoder) checkStruct(n *yaml.Node, t reflect.Type, key string) bool {
	if n.Kind != yaml.MappingNode {
		if key == "" {
			d.errorf(n.Line, "(top level)", "must be a mapping of keys like pipelines: and streams:, not %s", kindName(n))
			return false
		}
		d.errorf(n.Line, key, "must be a mapping, not %s", kindName(n))
		return false
	}
	fields := yamlFields(t)
	seen := map[string]int{}
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		sub := join(key, k.Value)
		if !d.plainKey(k, key, sub) {
			continue
		}
		f, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if s := suggest(k.Value, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
				// The "required" complaint about the key meant here would
				// repeat this one.
				d.bad = append(d.bad, join(key, s))
			}
			d.errorf(k.Line, sub, "%s", msg)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, sub, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[sub] = k.Line
		if !d.check(v, f.Type, sub) {
			v = nullNode
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
	return true
}

// plainKey reports whether k, a key of the mapping at key, is a plain
// name; it complains about any other key.
func (d *decoder) plainKey(k *yaml.Node, key, sub string) bool {
	switch {
	case k.Kind != yaml.ScalarNode:
		d.errorf(k.Line, key, "keys must be plain names, not %s", kindName(k))
		return false
	case k.ShortTag() == "!!merge":
		d.errorf(k.Line, sub, "merge keys (<<) are not supported; write the keys out")
		// Without the merged keys the mapping is incomplete: complaints
		// about what it lacks would be noise.
		d.bad = append(d.bad, key)
		return false
	}
	return true
}

// checkSink checks a pipeline's sink: a mapping with the block of exactly
// one registered driver, checked against the driver's options type like
// any other part of the file. The block of a second driver is checked too,
// then dropped.
func (d *decoder) checkSink(n *yaml.Node, key string) bool {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, key, "must be a mapping, not %s", kindName(n))
		return false
	}
	seen := map[string]int{}
	var kinds []string
	kept := n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		sub := join(key, k.Value)
		if !d.plainKey(k, key, sub) {
			continue
		}
		r, ok := sinks.Lookup(k.Value)
		if !ok {
			msg := "unknown sink driver"
			if s := suggestName(k.Value, sinks.Drivers()); s != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", s)
			} else {
				msg += fmt.Sprintf(" (registered: %s)", strings.Join(sinks.Drivers(), ", "))
			}
			d.errorf(k.Line, sub, "%s", msg)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, sub, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[sub] = k.Line
		if !d.check(v, r.OptionsType(), sub) {
			v = nullNode
		}
		kinds = append(kinds, k.Value)
		if len(kinds) == 1 {
			kept = append(kept, k, v)
		}
	}
	if len(kinds) > 1 {
		d.errorf(d.lines[key], key, "has both %s and %s; a pipeline has exactly one sink", kinds[0], kinds[1])
		// The first block is kept for decoding; what the driver would
		// say about it adds nothing.
		d.bad = append(d.bad, join(key, kinds[0]))
	}
	n.Content = kept
	return true
}

func join(key, name string) string {
	if key == "" {
		return name
	}
	return key + "." + name
}

// yamlFields maps the yaml names of t's fields to the fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f
	}
	return m
}

// suggest returns the known key closest to a misspelt one, or "".
func suggest(name string, fields map[string]reflect.StructField) string {
	keys := make([]string, 0, len(fields))
	for f := range fields {
		keys = append(keys, f)
	}
	return suggestName(name, keys)
}

// suggestName returns the name among known closest to a misspelt one, or
// "".
func suggestName(name string, known []string) string {
	best, bestDist := "", 3
	lower := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for _, f := range known {
		if f == lower {
			return f
		}
		if dist := levenshtein(lower, f); dist < bestDist || dist == bestDist && f < best {
			best, bestDist = f, dist
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
