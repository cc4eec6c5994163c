# lorasc plot: figure figure2_smollm2_rank of experiments/paper/figure2_smollm2.lua (/work/paper_lr3.db)
# Redraw by hand in this directory:  gnuplot figure2_smollm2_rank.gp  (PNG),
#   gnuplot -e 'fmt="svg"' figure2_smollm2_rank.gp  (SVG)
if (!exists('fmt')) fmt = 'png'
if (fmt eq 'svg') {
  set terminal svg size 1000,650 dynamic noenhanced font 'sans,11' background rgb 'white'
  set output 'figure2_smollm2_rank.svg'
} else {
  set terminal pngcairo size 1000,650 noenhanced font 'sans,10' background rgb 'white'
  set output 'figure2_smollm2_rank.png'
}
dat = 'figure2_smollm2_rank.dat'
set grid
set key outside right top
set title 'Figure 2 on text: SST-2 test accuracy against LoRA rank (SmolLM2-135M-Instruct)'
set xlabel 'LoRA rank r'
set ylabel 'test accuracy (%)'
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
set xtics ('2' 2, '8' 8, '32' 32)
set logscale x 2
plot dat index 0 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lora', \
     dat index 1 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'cola', \
     dat index 2 using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 title 'lorasc'
unset output
