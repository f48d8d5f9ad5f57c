package bootmenu

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// GRUB output styles.
const (
	// GRUBScript is an /etc/grub.d/ script: grub-mkconfig runs it and pastes
	// its output into grub.cfg; the two-line header prints the rest of the
	// file, as Debian's 40_custom does.
	GRUBScript = "grub.d"
	// GRUBConfig is grub.cfg syntax for a custom.cfg, or a configfile/
	// standalone grub.cfg: it also sets the default entry.
	GRUBConfig = "cfg"
)

// RenderGRUB writes GRUB menuentries for entries in style (GRUBScript or
// GRUBConfig). Every word is single-quoted: inside single quotes GRUB
// expands nothing ($, \, spaces and unicode are literal), and a quote is
// written '\” as in sh.
func RenderGRUB(w io.Writer, entries []Entry, style string) error {
	var header string
	switch style {
	case GRUBScript:
		header = grubScriptHeader
	case GRUBConfig:
		header = grubTitle
	default:
		return fmt.Errorf("GRUB output style %q: want %s or %s", style, GRUBScript, GRUBConfig)
	}
	var b bytes.Buffer
	def := ""
	for _, e := range entries {
		if e.Default {
			def = e.ID
		}
	}
	if def != "" {
		if style == GRUBConfig {
			fmt.Fprintf(&b, "set default=%s\n", grubQuote(def))
		} else {
			fmt.Fprintf(&b, "# To boot %s by default, set GRUB_DEFAULT=%s in /etc/default/grub and run update-grub.\n", def, def)
		}
	}
	for _, e := range entries {
		if err := e.Validate(); err != nil {
			return err
		}
		words := []string{"linux", grubQuote(e.Kernel)}
		for _, p := range e.Options {
			if err := grubParam(p); err != nil {
				return fmt.Errorf("entry %s: %w", e.ID, err)
			}
			words = append(words, grubQuote(p))
		}
		fmt.Fprintf(&b, "\nmenuentry %s --id %s --class gnu-linux --class os {\n", grubQuote(e.Title), grubQuote(e.ID))
		fmt.Fprintf(&b, "\techo %s\n", grubQuote("Loading "+e.Kernel+" ..."))
		fmt.Fprintf(&b, "\t%s\n", strings.Join(words, " "))
		fmt.Fprintf(&b, "\tinitrd %s\n", grubQuote(e.Initrd))
		b.WriteString("}\n")
	}
	return writeSealed(w, header, b.Bytes())
}

// grubQuote single-quotes s for GRUB's script lexer.
func grubQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// grubParam refuses what GRUB's linux command would hand the kernel
// escaped: it puts a backslash before \ ' and " (grub-core/lib/cmdline.c)
// and the kernel keeps that backslash.
func grubParam(p string) error {
	if strings.ContainsAny(p, `\'"`) {
		return fmt.Errorf("kernel parameter %q: GRUB passes \\, ' and \" to the kernel with a backslash before them, which the kernel keeps: use systemd-boot, or a value without them", p)
	}
	return nil
}
