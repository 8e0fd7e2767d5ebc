set terminal pngcairo size 900,480 font ',10'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set ylabel 'ratio to direct (median)'
set grid ytics
set key top right
set yrange [0:*]
reset
set terminal pngcairo size 900,480 font ',10'
set output 'detect_cdf.png'
set title 'Detection latency: listen() to first successful connect'
set logscale x
set xlabel 'ms (log scale)'
set ylabel 'fraction of trials'
set yrange [0:1.02]
set grid
set key bottom right
set arrow from 100, graph 0 to 100, graph 1 nohead dt 2 lc rgb 'red'
plot 'detect_porthole.dat' using 1:2 with steps lw 2 title 'porthole (default 50 ms scan)', 'detect_reference.dat' using 1:2 with steps lw 2 title 'reference (1 s /proc scan + socat)'
