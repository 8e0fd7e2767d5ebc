set terminal pngcairo size 900,480 font ',10'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set ylabel 'ratio to direct (median)'
set grid ytics
set key top right
set yrange [0:*]
set output 'requests.png'
set title 'Requests/s (nginx + wrk, 50 connections) relative to direct'
unset arrow 1
unset label 1
plot for [i=2:5] 'requests.dat' using i:xtic(1) title columnheader(i)
