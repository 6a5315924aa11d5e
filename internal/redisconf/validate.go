package redisconf

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrOperatorOwned and ErrUnknown classify refused override names.
var (
	ErrOperatorOwned = errors.New("directive is managed by the operator")
	ErrUnknown       = errors.New("directive is not supported")
)

// operatorOwned directives would break cluster management, identity,
// authentication or the container contract if a user changed them.
var operatorOwned = []string{
	"port", "bind", "bind-source-addr", "dir", "unixsocket", "unixsocketperm",
	"daemonize", "supervised", "pidfile", "logfile", "syslog-enabled",
	"protected-mode", "requirepass", "masterauth", "masteruser", "aclfile", "user",
	"include", "rename-command", "loadmodule", "enable-debug-command",
	"enable-module-command", "enable-protected-configs", "replicaof", "slaveof",
	"databases", "dbfilename", "appendfilename", "appenddirname",
	"cluster-enabled", "cluster-config-file", "cluster-port", "cluster-node-timeout",
	"cluster-announce-ip", "cluster-announce-port", "cluster-announce-bus-port",
	"cluster-announce-tls-port", "cluster-announce-hostname",
	"cluster-preferred-endpoint-type",
	// Rendered, a build without defragmentation support refuses to start;
	// the operator switches it at run time (RedisCluster spec.activeDefrag).
	"activedefrag",
}

type rule struct {
	check func(string) error
	// live reports whether CONFIG SET changes it on a running server.
	live bool
}

var (
	sizeRE   = regexp.MustCompile(`^(?i)[0-9]+(b|k|kb|m|mb|g|gb)?$`)
	eventsRE = regexp.MustCompile(`^[KEg$lshzxetdmAn]*$`)
)

func size(v string) error {
	if !sizeRE.MatchString(v) {
		return fmt.Errorf("%q is not a size (e.g. 512mb, 8gb)", v)
	}
	return nil
}

func boolean(v string) error { return oneOf("yes", "no")(v) }

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
		}
		return nil
	}
}

func intRange(lo, hi int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("%q is not an integer in [%d, %d]", v, lo, hi)
		}
		return nil
	}
}

func savePairs(v string) error {
	f := strings.Fields(v)
	if len(f)%2 != 0 {
		return fmt.Errorf("%q: want \"seconds changes\" pairs, or \"\" to disable snapshots", v)
	}
	for _, x := range f {
		if n, err := strconv.ParseInt(x, 10, 64); err != nil || n < 1 {
			return fmt.Errorf("%q: %q is not a positive integer", v, x)
		}
	}
	return nil
}

func outputBufferLimit(v string) error {
	f := strings.Fields(v)
	if len(f) == 0 || len(f)%4 != 0 {
		return fmt.Errorf("%q: want \"<class> <hard> <soft> <seconds>\" groups", v)
	}
	for i := 0; i < len(f); i += 4 {
		if err := oneOf("normal", "replica", "slave", "pubsub")(f[i]); err != nil {
			return err
		}
		if err := firstError(size(f[i+1]), size(f[i+2]), intRange(0, 1<<31)(f[i+3])); err != nil {
			return err
		}
	}
	return nil
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// rules lists the directives users may set. An allowlist rather than a
// denylist: redis-server refuses to start on an unknown or misspelt
// directive, and a crash-looping StatefulSet is a worse error message than
// a refused spec.
var rules = map[string]rule{
	"maxmemory":                       {size, true},
	"maxmemory-policy":                {oneOf("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"), true},
	"maxmemory-samples":               {intRange(1, 64), true},
	"maxmemory-eviction-tenacity":     {intRange(0, 100), true},
	"save":                            {savePairs, true},
	"appendonly":                      {boolean, true},
	"appendfsync":                     {oneOf("always", "everysec", "no"), true},
	"no-appendfsync-on-rewrite":       {boolean, true},
	"auto-aof-rewrite-percentage":     {intRange(0, 1<<31), true},
	"auto-aof-rewrite-min-size":       {size, true},
	"aof-use-rdb-preamble":            {boolean, true},
	"stop-writes-on-bgsave-error":     {boolean, true},
	"rdbcompression":                  {boolean, true},
	"hz":                              {intRange(1, 500), true},
	"dynamic-hz":                      {boolean, true},
	"timeout":                         {intRange(0, 1<<31), true},
	"tcp-keepalive":                   {intRange(0, 1<<31), true},
	"maxclients":                      {intRange(1, 1<<31), true},
	"loglevel":                        {oneOf("debug", "verbose", "notice", "warning"), true},
	"slowlog-log-slower-than":         {intRange(-1, 1<<40), true},
	"slowlog-max-len":                 {intRange(0, 1<<31), true},
	"latency-monitor-threshold":       {intRange(0, 1<<40), true},
	"notify-keyspace-events":          {func(v string) error { return matchRE(eventsRE, v) }, true},
	"lazyfree-lazy-eviction":          {boolean, true},
	"lazyfree-lazy-expire":            {boolean, true},
	"lazyfree-lazy-server-del":        {boolean, true},
	"lazyfree-lazy-user-del":          {boolean, true},
	"lazyfree-lazy-user-flush":        {boolean, true},
	"replica-lazy-flush":              {boolean, true},
	"active-defrag-ignore-bytes":      {size, true},
	"active-defrag-threshold-lower":   {intRange(0, 1000), true},
	"active-defrag-threshold-upper":   {intRange(0, 1000), true},
	"active-defrag-cycle-min":         {intRange(1, 99), true},
	"active-defrag-cycle-max":         {intRange(1, 99), true},
	"active-defrag-max-scan-fields":   {intRange(1, 1<<31), true},
	"active-expire-effort":            {intRange(1, 10), true},
	"lfu-log-factor":                  {intRange(0, 1<<31), true},
	"lfu-decay-time":                  {intRange(0, 1<<31), true},
	"busy-reply-threshold":            {intRange(0, 1<<40), true},
	"repl-backlog-size":               {size, true},
	"repl-diskless-sync":              {boolean, true},
	"repl-timeout":                    {intRange(1, 1<<31), true},
	"min-replicas-to-write":           {intRange(0, 1<<31), true},
	"min-replicas-max-lag":            {intRange(0, 1<<31), true},
	"client-output-buffer-limit":      {outputBufferLimit, true},
	"cluster-require-full-coverage":   {boolean, true},
	"cluster-allow-reads-when-down":   {boolean, true},
	"cluster-replica-validity-factor": {intRange(0, 1<<31), true},
	"cluster-migration-barrier":       {intRange(0, 1<<31), true},
	"cluster-allow-replica-migration": {boolean, true},
	"hash-max-listpack-entries":       {intRange(0, 1<<31), true},
	"hash-max-listpack-value":         {intRange(0, 1<<31), true},
	"zset-max-listpack-entries":       {intRange(0, 1<<31), true},
	"zset-max-listpack-value":         {intRange(0, 1<<31), true},
	"set-max-intset-entries":          {intRange(0, 1<<31), true},
	// Read once at start-up: changing them needs a rolling restart.
	"tcp-backlog":         {intRange(1, 65535), false},
	"io-threads":          {intRange(1, 128), false},
	"io-threads-do-reads": {boolean, false},
}

func matchRE(re *regexp.Regexp, v string) error {
	if !re.MatchString(v) {
		return fmt.Errorf("%q does not match %s", v, re)
	}
	return nil
}

// Validate checks one override (name lower-case).
func Validate(name, value string) error {
	if slices.Contains(operatorOwned, name) {
		return fmt.Errorf("override %q: %w", name, ErrOperatorOwned)
	}
	r, ok := rules[name]
	if !ok {
		return fmt.Errorf("override %q: %w", name, ErrUnknown)
	}
	if strings.ContainsAny(value, "\r\n\"'") {
		return fmt.Errorf("override %q: value must not contain quotes or line breaks", name)
	}
	if err := r.check(value); err != nil {
		return fmt.Errorf("override %q: %w", name, err)
	}
	return nil
}

// normalize brings values into the form Redis reports back, so that
// equivalent spellings hash the same.
func normalize(name, value string) string {
	switch name {
	case "maxmemory", "repl-backlog-size", "auto-aof-rewrite-min-size", "active-defrag-ignore-bytes":
		return strings.ToLower(value)
	case "save", "client-output-buffer-limit":
		return strings.Join(strings.Fields(value), " ")
	}
	return value
}

// Live reports whether a directive can be changed on a running node with
// CONFIG SET. Operator-owned directives never are: the operator changes
// them by rolling pods.
func Live(name string) bool {
	r, ok := rules[name]
	return ok && r.live
}
