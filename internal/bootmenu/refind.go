package bootmenu

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// RenderRefind writes rEFInd manual boot stanzas for entries, for
// refind.conf or a file it includes ("include dockroot.conf"). Titles and
// options are double-quoted with "" for a literal quote; paths are left
// unquoted because rEFInd turns '/' into '\' only outside quotes.
func RenderRefind(w io.Writer, entries []Entry) error {
	var b bytes.Buffer
	for _, e := range entries {
		if e.Default {
			fmt.Fprintf(&b, "# To boot %s by default, put this line in refind.conf: default_selection %s\n", e.ID, refindQuote(e.Title))
		}
	}
	for _, e := range entries {
		if err := e.Validate(); err != nil {
			return err
		}
		cmdline, err := KernelCmdline(e.Options)
		if err != nil {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
		fmt.Fprintf(&b, "\nmenuentry %s {\n", refindQuote(e.Title))
		b.WriteString("\tostype Linux\n")
		fmt.Fprintf(&b, "\tloader %s\n", e.Kernel)
		fmt.Fprintf(&b, "\tinitrd %s\n", e.Initrd)
		fmt.Fprintf(&b, "\toptions %s\n", refindQuote(cmdline))
		b.WriteString("}\n")
	}
	return writeSealed(w, refindTitle, b.Bytes())
}

func refindQuote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
