# Shortcuts for people who like make; dev.py does the work and needs only Python 3.
.PHONY: lab test bench
lab:
	python3 dev.py lab
test:
	python3 dev.py test
bench:
	python3 dev.py bench
