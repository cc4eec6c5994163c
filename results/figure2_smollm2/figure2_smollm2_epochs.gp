# lorasc plot: figure figure2_smollm2_epochs of experiments/paper/figure2_smollm2.lua (/work/paper_lr3.db)
# Redraw by hand in this directory:  gnuplot figure2_smollm2_epochs.gp  (PNG),
#   gnuplot -e 'fmt="svg"' figure2_smollm2_epochs.gp  (SVG)
if (!exists('fmt')) fmt = 'png'
if (fmt eq 'svg') {
  set terminal svg size 1000,650 dynamic noenhanced font 'sans,11' background rgb 'white'
  set output 'figure2_smollm2_epochs.svg'
} else {
  set terminal pngcairo size 1000,650 noenhanced font 'sans,10' background rgb 'white'
  set output 'figure2_smollm2_epochs.png'
}
dat = 'figure2_smollm2_epochs.dat'
set grid
set key outside right top
set title 'Figure 2 on text: SST-2 test accuracy against epochs (SmolLM2-135M-Instruct)'
set xlabel 'epochs (COLA and LoRASC: one expert each)'
set ylabel 'test accuracy (%)'
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set xtics ('1' 1, '2' 2, '5' 5, '10' 10, '20' 20)
set logscale x 2
plot dat index 0 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lora', \
     dat index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'cola', \
     dat index 2 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lorasc'
unset output
