while pgrep -f "bash runs/tune45.sh" >/dev/null; do sleep 10; done
date
cp runs/tune45/tune_ssd.json runs/tune45/tune_ssd_batch256.json
python -m experiments.tune --data_dir ../shared/data/cifar10-jpeg.tar.gz --workdir runs/tune45 --seeds 4,5 --no_progress --method ssd --grid selection=30,100 --grid batch_size=128
date
