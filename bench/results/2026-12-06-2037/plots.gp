set terminal pngcairo size 900,480 font ',10'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set ylabel 'ratio to direct (median)'
set grid ytics
set key top right
set yrange [0:*]
set output 'throughput.png'
set title 'Bulk throughput (iperf3) relative to direct'
set arrow 1 from graph 0, first 0.75 to graph 1, first 0.75 nohead dt 2 lc rgb 'red'
set label 1 'porthole target 0.75x' at graph 0.99, first 0.75 right offset 0,-0.8 tc rgb 'red'
plot for [i=2:5] 'throughput.dat' using i:xtic(1) title columnheader(i)
