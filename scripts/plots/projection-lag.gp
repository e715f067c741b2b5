# Projection lag over time: acknowledged PostShouts read back with
# GetShout(min_position), per second (shoutflow-bench --probe-rate).
# gnuplot -e "data='lag-series.dat'; out='x.png'; subtitle='...'; warmup=3" projection-lag.gp
# data columns: t ok visible_p50_ms visible_p99_ms visible_max_ms
set terminal pngcairo size 900,560 font "sans,10"
set output out
set title "Acknowledgement -> readable in the shouts read model, per second\n{/*0.8 ".subtitle."}"
set xlabel "seconds since the load began"
set ylabel "ack -> visible (ms)"
set y2label "commands/s"
set ytics nomirror
set y2tics
set grid
set yrange [0:*]
set y2range [0:*]
set key top left
set datafile missing "NaN"
set arrow from warmup, graph 0 to warmup, graph 1 nohead dashtype 2
set label "warm-up ends" at warmup, graph 0.95 offset 0.5,0
plot data using 1:3 with linespoints title "p50", \
     data using 1:4 with linespoints title "p99", \
     data using 1:5 with lines dashtype 3 title "max", \
     data using 1:2 axes x1y2 with steps title "commands/s (right)"
