# Throughput against latency: the open-loop sweep of scripts/bench.
# gnuplot -e "data='sweep.dat'; out='x.png'; subtitle='...'" throughput-latency.gp
# data columns: fraction scheduled/s achieved/s p50_ms p90_ms p99_ms p999_ms errors
set terminal pngcairo size 900,560 font "sans,10"
set output out
set title "PostShout, open loop: latency against achieved throughput\n{/*0.8 ".subtitle."}"
set xlabel "achieved commands/s"
set ylabel "latency from the scheduled send time (ms)"
set logscale y
set grid
set key top left
plot data using 3:4 with linespoints title "p50", \
     data using 3:5 with linespoints title "p90", \
     data using 3:6 with linespoints title "p99", \
     data using 3:7 with linespoints title "p99.9"
