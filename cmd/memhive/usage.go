package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// commands are memhive's subcommands, as `memhive help` lists them.
var commands = []struct{ name, args, what string }{
	{"serve", "[flags]", "run the memcache server, alone or (--etcd) as a node of a cluster (flags with no command also mean serve)"},
	{"cache", "create|list|show|resize|enable|disable|delete ...", "manage caches"},
	{"cred", "create|list|update|promote|delete ...", "manage a cache's credentials and the TLS client certificates bound to them"},
	{"env", "CACHE [--new-credential]", "print MEMCACHIER_SERVERS/USERNAME lines for eval (and PASSWORD, with a new credential)"},
	{"version", "", "print the version"},
	{"help", "[COMMAND]", "this list, or a command's flags"},
}

// printCommands writes the list of subcommands, a line each.
func printCommands(w io.Writer) {
	fmt.Fprintln(w, "memhive: a multi-tenant memcache server and its tools")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: memhive COMMAND [arguments] [flags]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.what)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, `"memhive COMMAND --help" (or "memhive help COMMAND") shows a command's arguments and flags.`)
}

// isHelpFlag reports whether arg asks for help, in any of the spellings
// Go's flag package accepts.
func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help":
		return true
	}
	return false
}

// wantsHelp reports whether args ask for help before a "--" ends the
// flags.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelpFlag(a) {
			return true
		}
	}
	return false
}

// helpTo makes fs print its usage on out when args ask for it (the reader
// asked: standard output), and on errOut otherwise (a mistake: standard
// error, with the error).
func helpTo(fs *flag.FlagSet, args []string, out, errOut io.Writer) {
	if wantsHelp(args) {
		fs.SetOutput(out)
	} else {
		fs.SetOutput(errOut)
	}
}

// setUsage gives fs a usage text: head, then its flags as printFlags
// writes them.
func setUsage(fs *flag.FlagSet, head string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintln(w, head)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "flags:")
		printFlags(w, fs)
	}
}

// printFlags writes fs's flags as the README writes them: long names with
// "--", a one-letter alias (a flag whose usage is "same as --NAME") beside
// its long name, the value's type and the default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	aliases := map[string][]string{}
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, "same as --"); ok && fs.Lookup(long) != nil {
			aliases[long] = append(aliases[long], f.Name)
			return
		}
		names = append(names, f.Name)
	})
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		var spell []string
		for _, a := range aliases[name] {
			spell = append(spell, "-"+a)
		}
		if len(name) == 1 {
			spell = append(spell, "-"+name) // memcached's own one-letter flags
		} else {
			spell = append(spell, "--"+name)
		}
		kind, usage := flag.UnquoteUsage(f)
		line := "  " + strings.Join(spell, ", ")
		if kind != "" {
			line += " " + kind
		}
		switch {
		case isZeroDefault(f):
		case isStringFlag(f):
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		default:
			usage += " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	}
}

// isZeroDefault reports whether f's default is its type's zero value,
// which is not worth printing.
func isZeroDefault(f *flag.Flag) bool {
	zero := reflect.New(reflect.TypeOf(f.Value).Elem()).Interface().(flag.Value)
	return f.DefValue == zero.String()
}

// isStringFlag reports whether f holds a string, whose default is quoted.
func isStringFlag(f *flag.Flag) bool {
	return reflect.TypeOf(f.Value).Elem().Kind() == reflect.String
}
