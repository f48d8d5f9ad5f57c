# Plots of docs/BENCHMARKS.md, drawn from the .dat files tests/bench writes.
# usage: gnuplot -e "data='DIR'; out='DIR'; hookclaim='…'" plot.gp
# Each plot is drawn only when its data file exists and is not empty.
have(f) = system("[ -s '".data."/".f."' ] && echo 1 || echo 0") eq "1"

set terminal pngcairo size 900,560 enhanced font "DejaVu Sans,11"
set grid ytics mytics xtics
set key top left box opaque
set border 3
set tics nomirror

# 1+2: the claim in one picture: dockroot's boot work is flat in image size
# and far below the shell way's.
if (have("hook.dat")) {
	set output out."/hook-vs-image-size.png"
	set title "Boot-time work vs image size (median of runs, bars: min–max)\n".hookclaim
	set logscale x 10
	set logscale y 10
	set xlabel "image size (MB of file content, log)"
	set ylabel "boot-time work (ms, log)"
	set xrange [*:*]
	# Room above the shell way's line for the key, clear of the data.
	set yrange [1:600]
	set key top right box opaque
	plot data."/hook.dat" using 1:2:3:4 with yerrorlines lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title "dockroot (in process), from the prepared base", \
	     data."/hook.dat" using 1:($10 > 0 ? $10 : 1/0) with linespoints lw 1.5 dt 3 pt 7 ps 1.1 lc rgb "#1f77b4" title "dockroot, first boot after a change (copies the top layer, saves the base)", \
	     data."/hook.dat" using 1:5:6:7 with yerrorlines lw 2 pt 5 ps 1.3 lc rgb "#d62728" title "the shell way (ancestor.sh: jq, layerdb scan, btrfs, cp -a)", \
	     data."/hook.dat" using 1:($9 > 0 ? $9 : 1/0) with linespoints lw 1.5 dt 2 pt 6 ps 1.1 lc rgb "#7f7f7f" title "then, after the boot: btrfs's commit of the switch (background)", \
	     data."/hook.dat" using 1:2:8 with labels offset 0,-1.2 font ",9" notitle
	set key top left box opaque
	unset logscale
	unset title
}

# 1d: a snapshot's cost follows the pointers in its source's tree root, and
# drops back when the tree gains a level.
if (have("root.dat")) {
	set output out."/snapshot-vs-tree-root.png"
	set title "One snapshot vs the pointers in its source's tree root (median of runs)\nbounded by a full root (493 pointers); a bigger tree gains a level and starts again with a few"
	set xlabel "pointers in the source subvolume's tree root"
	set ylabel "snapshot (ms)"
	set xrange [0:520]
	set yrange [0:*]
	set arrow 1 from 493, graph 0 to 493, graph 1 nohead dt 2 lc rgb "#7f7f7f"
	set key top left box opaque
	plot data."/root.dat" using 1:($5 == 1 ? $2 : 1/0) with linespoints lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title "root at level 1", \
	     data."/root.dat" using 1:($5 >= 2 ? $2 : 1/0) with points pt 5 ps 1.5 lc rgb "#ff7f0e" title "root at level 2 (more files)", \
	     data."/root.dat" using 1:($5 == 1 ? $2 : 1/0):6 with labels offset 0,1.2 font ",9" notitle, \
	     data."/root.dat" using 1:($5 >= 2 ? $2 : 1/0):6 with labels left offset 1.5,0 font ",9" notitle
	unset arrow 1
	set xrange [*:*]
	set yrange [*:*]
	unset title
}

# 3: deleting the old layer does not grow with its files.
if (have("delete.dat")) {
	set output out."/delete-vs-files.png"
	set title "Deleting the old rw layer vs files in it (time until the call returns)\ndockroot: tree search + one ioctl per subvolume; walk: containerd-style scan of every directory"
	set logscale x 10
	set logscale y 10
	set xlabel "files in the layer (log)"
	set ylabel "ms (log)"
	plot data."/delete.dat" using 1:2 with linespoints lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title "dockroot", \
	     data."/delete.dat" using 1:5 with linespoints lw 2 pt 6 ps 1.3 dt 2 lc rgb "#1f77b4" title "dockroot, 3 nested subvolumes", \
	     data."/delete.dat" using 1:3 with linespoints lw 2 pt 5 ps 1.3 lc rgb "#d62728" title "btrfs subvolume delete (ancestor; fails with nested)", \
	     data."/delete.dat" using 1:4 with linespoints lw 2 pt 9 ps 1.3 lc rgb "#2ca02c" title "walk, then delete", \
	     data."/delete.dat" using 1:6 with linespoints lw 2 pt 8 ps 1.3 dt 2 lc rgb "#2ca02c" title "walk, then delete, 3 nested subvolumes"
	unset logscale
	unset title
}

# 6: the initramfs phase of each initramfs under QEMU TCG, with its parts.
if (have("boot.dat")) {
	set output out."/boot-to-init.png"
	set title "Initramfs phase: the kernel's Run /init to the image's init (QEMU TCG, median; bars: min–max)"
	set style data histogram
	set style histogram errorbars gap 2 lw 1.5
	set style fill solid 0.8 border -1
	set xtics rotate by -20
	set xlabel ""
	set ylabel "ms after the kernel ran /init"
	set yrange [0:*]
	set key top left
	plot data."/boot.dat" using 2:2:2:xtic(1) lc rgb "#9467bd" title "root disk probed", \
	     data."/boot.dat" using 3:3:3 lc rgb "#2ca02c" title "btrfs mounted", \
	     data."/boot.dat" using 4:5:6 lc rgb "#1f77b4" title "image's init ran"
	set style data lines
	unset xtics
	set xtics
}

# 4: top-layer copy vs cp -a.
if (have("copy.dat")) {
	set output out."/toplayer-vs-cp.png"
	set title "Top-layer copy: dockroot vs cp -a (median ms, lower is better)"
	set style data histogram
	set style histogram clustered gap 1.5
	set style fill solid 0.8 border -1
	set xtics rotate by -15
	set ylabel "ms"
	set yrange [0:*]
	set key top right
	plot data."/copy.dat" using 2:xtic(1) lc rgb "#1f77b4" title "dockroot (toplayer.Apply)", \
	     data."/copy.dat" using 3 lc rgb "#d62728" title "cp -a"
}
