set -x
T="python -m experiments.tune --data_dir ../shared/data/cifar10-jpeg.tar.gz --workdir runs/tune45 --seeds 4,5 --no_progress"
$T --method ssd --grid selection=1,3,10,30
$T --method iu --grid scale=0.05,0.2,1,5
$T --method scrub --grid lr=5e-4,2e-3,5e-3
$T --method boundary_shrink --grid lr=1e-3,3e-3,0.01
$T --method boundary_expanding --grid lr=1e-3,3e-3,0.01
