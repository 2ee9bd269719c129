"""Reads a workbook with openpyxl and prints every sheet's cell values as JSON:
{"sheet name": [[row values...], ...]}. Numbers stay numbers, dates become ISO text.

Usage: report_xlsx.py FILE
"""

import datetime
import json
import sys

import openpyxl

book = openpyxl.load_workbook(sys.argv[1], data_only=True)
out = {}
for sheet in book.worksheets:
    rows = []
    for row in sheet.iter_rows(values_only=True):
        rows.append([v.isoformat() if isinstance(v, datetime.datetime) else v for v in row])
    out[sheet.title] = rows
json.dump(out, sys.stdout)
