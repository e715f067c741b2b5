# Fail-over timeline: commands per second and errors around a SIGKILL of one
# of three nodes, and its restart (scripts/bench).
# gnuplot -e "data='failover-series.dat'; out='x.png'; subtitle='...'; kill_at=10; restart_at=25" failover.gp
# data columns: t ok errors p99_ms
set terminal pngcairo size 900,560 font "sans,10"
set output out
set title "3 nodes, open-loop PostShout through nodes 0 and 1; node 2 SIGKILLed, then restarted\n{/*0.8 ".subtitle."}"
set xlabel "seconds since the load began"
set ylabel "per second"
set y2label "p99 latency of the second (ms)"
set ytics nomirror
set y2tics
set grid
set yrange [0:*]
set y2range [0:*]
set key top right
set datafile missing "NaN"
set arrow from kill_at, graph 0 to kill_at, graph 1 nohead linecolor "red" linewidth 2
set label "SIGKILL node 2" at kill_at, graph 0.97 offset 0.5,0 textcolor "red"
set arrow from restart_at, graph 0 to restart_at, graph 1 nohead linecolor "dark-green" linewidth 2
set label "restart node 2" at restart_at, graph 0.90 offset 0.5,0 textcolor "dark-green"
plot data using 1:2 with steps linewidth 2 title "commands ok", \
     data using 1:3 with steps linewidth 2 title "errors", \
     data using 1:4 axes x1y2 with lines dashtype 2 title "p99 (right)"
