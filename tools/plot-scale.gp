# tools/plot-scale.gp - draw a scaling sweep (stress/scale.sh's CSV).
#
#   gnuplot -e "csv='docs/scale-x.csv'; png='docs/scale-x.png'" tools/plot-scale.gp
#   (make stress-plot CSV=docs/scale-x.csv does this)
#
# One column of panels per workload: top, median ops/s against threads (log
# scales, min-max bars over the reps); bottom, thread-CPU ns per op (what a
# pair costs, independent of how many PUs the machine lent us). A dashed line
# marks the PU count: to its right the threads are oversubscribed.
# CSV columns: host,allocator,workload,threads,cpus,reps,ops_per_s_median,
# ops_per_s_min,ops_per_s_max,cpu_ns_per_op_median,efficiency,rel_to_lfpool,
# bad_runs,status

if (!exists("csv")) csv = 'docs/scale.csv'
if (!exists("png")) png = csv[1:strlen(csv)-4].'.png'

# Lists from the file, in order of first appearance (awk: present wherever
# gnuplot is).
workloads = system("awk -F, 'NR>1 && !s[$3]++ {printf \"%s \", $3}' ".csv)
allocators = system("awk -F, 'NR>1 && !s[$2]++ {printf \"%s \", $2}' ".csv)
if (!exists("label")) label = system("awk -F, 'NR==2 {printf \"%s\", $1}' ".csv)
host = label
cpus = system("awk -F, 'NR==2 {printf \"%s\", $5}' ".csv) + 0
reps = system("awk -F, 'NR==2 {printf \"%s\", $6}' ".csv)
nw = words(workloads)
# The harness calls the plain pool "lfpool"; say in the legend that it is the
# uncached shared stack (LFP_POOL_NO_CACHE), the worst case by design.
legend(a) = (a eq "lfpool") ? "lfpool (no cache)" : ((a eq "lfpool-cached") ? "lfpool (per-thread cache)" : a)

if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
    set terminal pngcairo size 640*nw+200,900 enhanced font "DejaVu Sans,10"
} else {
    set terminal png size 640*nw+200,900
}
set output png
set datafile separator ","
set key outside right top vertical samplen 2
set grid xtics ytics mxtics mytics lc rgb "#dddddd"
set logscale x 2
set xlabel "threads"
# Fit the data, not the next decade, with a margin above and below.
set autoscale noextend
set offsets 0, 0, graph 0.08, graph 0.08
set style line 1 lw 2 pt 7 ps 0.8 lc rgb "#d62728"
set style line 2 lw 2 pt 5 ps 0.8 lc rgb "#ff7f0e"
set style line 3 lw 2 pt 9 ps 0.8 lc rgb "#1f77b4"
set style line 4 lw 2 pt 11 ps 0.8 lc rgb "#2ca02c"
set style line 5 lw 2 pt 13 ps 0.8 lc rgb "#9467bd"
set style line 6 lw 2 pt 3 ps 0.8 lc rgb "#8c564b"
set style line 7 lw 2 pt 1 ps 0.8 lc rgb "#7f7f7f"

# rows(w, a): only that workload's and allocator's measured rows
rows(w, a) = sprintf("< awk -F, 'NR>1 && $3==\"%s\" && $2==\"%s\" && $7!=\"nan\" && $14!=\"SKIP\"' %s", w, a, csv)

set multiplot layout 2, nw title sprintf("lfpool-stress scaling on %s (%d PUs; median of %s runs each)", host, cpus, reps)
do for [i=1:nw] {
    w = word(workloads, i)
    set title sprintf("%s: throughput", w)
    set ylabel "alloc+free pairs per second"
    set logscale y 10
    set ytics ("1M" 1e6, "2M" 2e6, "5M" 5e6, "10M" 1e7, "20M" 2e7, "50M" 5e7, "100M" 1e8, \
               "200M" 2e8, "500M" 5e8, "1G" 1e9, "2G" 2e9, "5G" 5e9, "10G" 1e10)
    set arrow 1 from cpus, graph 0 to cpus, graph 1 nohead dt 2 lc rgb "#444444"
    plot for [j=1:words(allocators)] rows(w, word(allocators, j)) \
        using 4:7:8:9 with yerrorlines ls j title legend(word(allocators, j))
}
do for [i=1:nw] {
    w = word(workloads, i)
    set title sprintf("%s: thread-CPU time per pair", w)
    set ylabel "CPU ns per alloc+free pair"
    set logscale y 10
    set ytics (1, 2, 3, 5, 7, 10, 12, 15, 20, 25, 30, 40, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 2000, 5000)
    set arrow 1 from cpus, graph 0 to cpus, graph 1 nohead dt 2 lc rgb "#444444"
    plot for [j=1:words(allocators)] rows(w, word(allocators, j)) \
        using 4:10 with linespoints ls j title legend(word(allocators, j))
}
unset multiplot
