# lorasc plot: figure figure2_epochs of experiments/paper/figure2_vision.lua (results/images.db)
# Redraw by hand in this directory:  gnuplot figure2_epochs.gp  (PNG),
#   gnuplot -e 'fmt="svg"' figure2_epochs.gp  (SVG)
if (!exists('fmt')) fmt = 'png'
if (fmt eq 'svg') {
  set terminal svg size 1000,650 dynamic noenhanced font 'sans,11' background rgb 'white'
  set output 'figure2_epochs.svg'
} else {
  set terminal pngcairo size 1000,650 noenhanced font 'sans,10' background rgb 'white'
  set output 'figure2_epochs.png'
}
dat = 'figure2_epochs.dat'
set grid
set key outside right top
set title 'Figure 2 (2-core scale): test accuracy against epochs, MNIST digits 5-9'
set xlabel 'epochs (LoRASC: one expert each)'
set ylabel 'test accuracy (%)'
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set xtics ('1' 1, '2' 2, '3' 3, '5' 5, '8' 8)
plot dat index 0 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lora', \
     dat index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'cola', \
     dat index 2 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lorasc'
unset output
